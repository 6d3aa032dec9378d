"""Pure arithmetic of the runner: step fitting over workers, rows over training seeds, paired differences."""

from __future__ import annotations

import pytest

from hddm_p2p.experiments.aggregate import combine, comparisons, paired, stats
from hddm_p2p.experiments.config import Comparison
from hddm_p2p.experiments.experts import fit_steps, lpt_makespan


def test_lpt_makespan_analytic_cases():
    assert lpt_makespan([1, 1, 1, 1], 1) == 4
    assert lpt_makespan([4, 4] + [1] * 12, 4) == 5  # two monolithic models, two seeds × 6 experts, 4 workers
    assert lpt_makespan([4, 4] + [1] * 12, 2) == 10
    assert lpt_makespan([4] + [1] * 2, 3) == 4  # a long job is the floor
    assert lpt_makespan([3, 3, 2, 2, 2], 2) == 7  # LPT, not optimal (6): what the submission order does


def test_fit_steps_with_one_worker_is_the_old_rule():
    # old: steps = budget / (Σ compute × s/step), floored to a multiple of 50
    steps, fit = fit_steps(110.0, [1 / 0.0328], [1, 1, 1, 1, 1, 1, 4])
    assert steps == int(110 / (10 * 0.0328)) // 50 * 50 == 300
    assert fit["makespan_units"] == 10 and fit["workers"] == 1


def test_fit_steps_spreads_the_budget_over_workers():
    # 4 workers at 25 steps/s each while all run: 0.04 s/step each; makespan 5 units → 200 s / 0.2 s = 1000
    steps, fit = fit_steps(200.0, [25.0] * 4, [4, 4] + [1] * 12)
    assert steps == 1000 and fit["expected_training_s"] == pytest.approx(200.0)
    assert fit["steps_per_s_total"] == 100
    # unequal rates: one worker's seconds per step is P / Σ rates
    steps, _ = fit_steps(100.0, [10.0, 30.0], [1, 1])
    assert steps == int(100 / (2 / 40 * 1)) // 50 * 50
    assert fit_steps(1.0, [1.0], [1])[0] == 50  # never fewer than 50 steps


def _record(seed: int, fds: list[float], divs: list[float], status: str = "ok") -> dict:
    if status != "ok":
        return {"training_seed": seed, "status": status, "reason": "budget"}
    return {"training_seed": seed, "status": "ok", "fd": stats(fds), "diversity": {**stats(divs), "class_std": []},
            "expert_usage": {"x": 1.0}, "wall_s": 1.0}


def test_one_training_seed_keeps_the_single_seed_format():
    row = combine({"name": "a"}, [_record(0, [2.0, 4.0], [0.1, 0.3])], (0,))
    assert row["status"] == "ok" and row["fd"]["per_seed"] == [2.0, 4.0]
    assert row["fd"]["mean"] == 3.0 and row["fd"]["std"] == 1.0 and row["fd"]["spread"] == "sampling seeds"


def test_two_training_seeds_mean_and_spread_over_training_seeds():
    row = combine({"name": "a"}, [_record(0, [2.0, 4.0], [0.1, 0.1]), _record(1, [6.0, 6.0], [0.3, 0.3])], (0, 1))
    fd = row["fd"]
    assert fd["per_training_seed"] == [3.0, 6.0] and fd["mean"] == 4.5 and fd["std"] == 1.5
    assert fd["spread"] == "training seeds" and fd["per_seed"] == [2.0, 4.0, 6.0, 6.0]
    assert fd["sampling_std"] == 0.5  # mean of the within-seed stds (1, 0)
    assert row["diversity"]["mean"] == pytest.approx(0.2)


def test_status_over_training_seeds():
    ok, skipped = _record(0, [1.0], [0.1]), _record(1, [], [], "skipped")
    assert combine({}, [ok, skipped], (0, 1))["status"] == "partial"
    assert combine({}, [skipped, None], (0, 1))["status"] == "skipped"
    assert combine({}, [None, None], (0, 1))["status"] == "pending"
    row = combine({}, [ok, skipped], (0, 1))
    assert row["fd"]["spread"] == "sampling seeds" and row["reason"] == "budget"


def test_paired_differences_per_training_seed_and_sign():
    a = combine({"name": "a", "group": "g"}, [_record(0, [1.0, 2.0], [0.2, 0.2]), _record(1, [3.0, 3.0], [0.2, 0.4])],
                (0, 1))
    b = combine({"name": "b", "group": "g"}, [_record(0, [2.0, 4.0], [0.1, 0.3]), _record(1, [5.0, 4.0], [0.3, 0.3])],
                (0, 1))
    d = paired(a, b, "fd")
    assert d["per_training_seed"] == {"0": -1.5, "1": -1.5} and d["mean"] == -1.5
    assert d["pairs"] == 4 and d["same_sign"] and d["signs"] == {"+": 0, "-": 4, "0": 0}  # −1, −2, −2, −1
    div = paired(a, b, "diversity")
    assert div["per_training_seed"] == {"0": 0.0, "1": pytest.approx(0.0)} and not div["same_sign"]  # +.1 −.1 −.1 +.1
    assert div["signs"] == {"+": 2, "-": 2, "0": 0}
    same = paired(a, a, "fd")
    assert same["signs"] == {"+": 0, "-": 0, "0": 4} and not same["same_sign"]
    out = comparisons([a, b], (Comparison("a", "b"), Comparison("a", "missing")))
    assert len(out) == 1 and out[0]["fd"] == d and out[0]["group"] == "g"


def test_paired_uses_only_seeds_evaluated_on_both_sides():
    a = combine({"name": "a"}, [_record(0, [1.0], [0.1]), _record(1, [9.0], [0.1])], (0, 1))
    b = combine({"name": "b"}, [_record(0, [2.0], [0.1]), _record(1, [], [], "skipped")], (0, 1))
    assert paired(a, b, "fd")["per_training_seed"] == {"0": -1.0}
    c = combine({"name": "c"}, [_record(0, [], [], "skipped"), None], (0, 1))
    assert paired(a, c, "fd") is None and comparisons([a, c], (Comparison("a", "c"),)) == []
