"""Result records: every number carries the metric and the network that produced it.

A record is one JSON object, e.g.::

    {"metric": "FD", "value": 12.3, "extractor": "cifar10-resnet@1a2b3c4d5e6f", "extractor_test_accuracy": 0.91,
     "n_gen": 10000, "n_ref": 10000, "gen": "samples/", "ref": "cifar10-test", "warnings": [], "hddm_version": "0.1.0"}

``metric`` is ``FID`` (standard Inception), ``FD`` (Fréchet distance, other features), ``LPIPS-diversity``
or ``CLIP-score``; ``extractor`` is the feature network's id with a hash of its weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from rich.table import Table

import hddm_p2p
from hddm_p2p.p2p._files import atomic_write


def make_record(metric: str, value: float, extractor: str, *, test_accuracy: float | None = None,
                **fields: Any) -> dict[str, Any]:
    """One result: metric, value, extractor id, its test accuracy (classifier features), then ``fields``."""
    return {"metric": metric, "value": float(f"{float(value):.7g}"), "extractor": extractor,
            "extractor_test_accuracy": test_accuracy, **fields, "hddm_version": hddm_p2p.__version__}


def write_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Write a JSON list of records atomically (a single record is still written as a one-element list)."""
    atomic_write(Path(path), (json.dumps(records, indent=2) + "\n").encode())


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def records_table(records: Iterable[dict[str, Any]], title: str = "evaluation") -> Table:
    """A rich table: metric, value (± std), extractor id, its test accuracy, sample counts; data in the caption."""
    records = list(records)
    data = sorted({" vs ".join(str(r[k]) for k in ("gen", "ref") if r.get(k)) for r in records} - {""})
    t = Table(title=title, caption="; ".join(data) or None)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("extractor", no_wrap=True)
    t.add_column("extractor test acc.", justify="right")
    t.add_column("n", justify="right")
    for r in records:
        value = _fmt(r["value"]) + (f" ± {_fmt(r['std'])}" if r.get("std") is not None else "")
        n = "/".join(str(r[k]) for k in ("n_gen", "n_ref", "n", "n_groups") if r.get(k) is not None)
        acc = r.get("extractor_test_accuracy")
        t.add_row(r["metric"], value, r["extractor"], f"{acc:.2%}" if acc is not None else "–", n)
    return t
