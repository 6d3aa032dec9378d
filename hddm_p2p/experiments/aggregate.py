"""From per-(ensemble, training seed) records to the rows of ``results.json`` and paired differences.

A record is one ensemble sampled with the experts of one training seed: FD and diversity per sampling
seed (``per_seed``), their mean and std. A row gathers an ensemble's records over training seeds:

    fd = {"per_training_seed": [m_0, m_1, ...],   m_s = mean over sampling seeds for training seed s
          "mean": mean_s m_s, "std": std_s m_s (ddof 0), "spread": "training seeds",
          "per_seed": [all values, training seed major], "sampling_std": mean_s std over sampling seeds}

With one training seed, ``fd`` is that seed's record (``std`` over sampling seeds, ``spread``: "sampling
seeds"), exactly as before training seeds existed. Every configuration is sampled from the same noise for
a sampling seed, whatever the training seed, so a − b is paired per (training seed, sampling seed).
"""

from __future__ import annotations

import numpy as np

from hddm_p2p.experiments.config import Comparison

METRICS = ("fd", "diversity")


def stats(values: list[float]) -> dict:
    return {"per_seed": [round(v, 6) for v in values], "mean": float(np.mean(values)), "std": float(np.std(values))}


def _across(records: list[dict], key: str) -> dict:
    if len(records) == 1:
        return {**records[0][key], "spread": "sampling seeds"}
    means = [r[key]["mean"] for r in records]
    return {"per_training_seed": [round(m, 6) for m in means], "mean": float(np.mean(means)),
            "std": float(np.std(means)), "spread": "training seeds",
            "per_seed": [v for r in records for v in r[key]["per_seed"]],
            "sampling_std": float(np.mean([r[key]["std"] for r in records]))}


def combine(base: dict, records: list[dict | None], seeds: tuple[int, ...]) -> dict:
    """The row of one ensemble: ``base`` fields, each training seed's record, and FD/diversity across them.

    Status: ok (every training seed evaluated), partial (some), else the first record's status
    (skipped / failed), or pending while none has run."""
    done = [r for r in records if r is not None]
    ok = [r for r in done if r["status"] == "ok"]
    status = ("ok" if len(ok) == len(seeds) else "partial" if ok else done[0]["status"] if done else "pending")
    row = {**base, "training_seeds": list(seeds), "status": status, "by_training_seed": done}
    if ok:
        row.update({key: _across(ok, key) for key in METRICS})
        row["expert_usage"] = ok[0]["expert_usage"]  # the first training seed's routing shares
        row["wall_s"] = round(sum(r["wall_s"] for r in ok), 2)
    reasons = [r["reason"] for r in done if r.get("reason")]
    if reasons:
        row["reason"] = reasons[0]
    return row


def paired(a: dict, b: dict, key: str) -> dict | None:
    """a − b of metric ``key`` per training seed (means over sampling seeds) and per (training, sampling)
    seed pair, for the training seeds where both rows were evaluated; None if there is none."""
    ra = {r["training_seed"]: r for r in a.get("by_training_seed", []) if r["status"] == "ok"}
    rb = {r["training_seed"]: r for r in b.get("by_training_seed", []) if r["status"] == "ok"}
    seeds = [s for s in ra if s in rb]
    if not seeds:
        return None
    per_training = {s: ra[s][key]["mean"] - rb[s][key]["mean"] for s in seeds}
    pairs = [va - vb for s in seeds for va, vb in zip(ra[s][key]["per_seed"], rb[s][key]["per_seed"])]
    signs = {"+": sum(d > 0 for d in pairs), "-": sum(d < 0 for d in pairs), "0": sum(d == 0 for d in pairs)}
    return {"per_training_seed": {str(s): round(d, 6) for s, d in per_training.items()},
            "mean": float(np.mean(list(per_training.values()))), "pairs": len(pairs), "signs": signs,
            "same_sign": signs["0"] == 0 and 0 in (signs["+"], signs["-"])}


def comparisons(rows: list[dict], wanted: tuple[Comparison, ...]) -> list[dict]:
    """Paired differences a − b (FD and diversity) of every wanted comparison with both rows evaluated."""
    by_name = {r["name"]: r for r in rows}
    out = []
    for c in wanted:
        a, b = by_name.get(c.a), by_name.get(c.b)
        if a is None or b is None:
            continue
        diffs = {key: paired(a, b, key) for key in METRICS}
        if all(d is not None for d in diffs.values()):
            out.append({"a": c.a, "b": c.b, "group": a["group"], **diffs})
    return out
