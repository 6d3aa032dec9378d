"""Parsing a user's string into one of a string ``Enum``'s values, with an error that lists the choices."""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from hddm_p2p.errors import SpecError

E = TypeVar("E", bound=Enum)


def parse_choice(cls: type[E], value: "str | E", what: str) -> E:
    """``cls(value)``, or ``SpecError("unknown <what> ...; choose one of: a, b, c")``."""
    try:
        return cls(value)
    except ValueError:
        raise SpecError(f"unknown {what} {value!r}; choose one of: {', '.join(m.value for m in cls)}") from None
