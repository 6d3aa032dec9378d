"""Shared hypothesis settings for the fuzz suite: a CI-sized budget and a deadline that turns a hang into a failure.

``HDDM_FUZZ_EXAMPLES`` raises the budget for a longer local run (e.g. 5000)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hddm_p2p.errors import HddmError

EXAMPLES = int(os.environ.get("HDDM_FUZZ_EXAMPLES", "150"))
# One example parses at most a few KiB; 1 s is ~100x the normal time, so a breach means a hang or a blow-up.
FUZZ = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=1), derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "manifests" / "examples"

json_scalars = (st.none() | st.booleans() | st.integers() | st.text(max_size=12)
                | st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=10)


def only_hddm_errors(fn: Callable[[], Any]) -> Any:
    """Run ``fn``: a result or an HddmError with a one-line message; any other exception fails the test."""
    try:
        return fn()
    except HddmError as e:
        assert str(e) and "\n" not in str(e).strip(), f"error message must be one line: {e!r}"
        return e


@pytest.fixture(autouse=True)
def _no_hddm_home_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("HDDM_HOME", str(tmp_path / "home"))
