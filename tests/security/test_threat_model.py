"""Every row of docs/threat-model.md names a test that exists, so the table cannot drift from the suite."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REF = re.compile(r"`([\w/]+\.py)::(\w+)`")


def test_every_attack_row_names_existing_tests():
    text = (ROOT / "docs" / "threat-model.md").read_text()
    section = text.split("## Attacks, checks and tests")[1].split("## What is NOT protected")[0]
    attack_rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| Attack")]
    assert len(attack_rows) >= 25
    for row in attack_rows:
        refs = REF.findall(row)
        assert refs, f"threat-model row without a test: {row[:80]}"
        for path, name in refs:
            source = (ROOT / "tests" / path).read_text()
            assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} does not exist"
