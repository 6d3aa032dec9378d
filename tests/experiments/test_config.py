"""Config parsing: strict keys, unknown experts/routers refused with one line, sweeps expand as documented."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from hddm_p2p.cli.app import app
from hddm_p2p.errors import SpecError
from hddm_p2p.experiments.config import expand_sweep, load_config, parse_config, ThresholdSweep

from tests.experiments.conftest import REPO


def _toy() -> dict:
    return yaml.safe_load((REPO / "experiments" / "cifar10_toy.yaml").read_text())


def test_shipped_configs_parse():
    for name in ("cifar10_toy.yaml", "cifar10_small.yaml", "cifar10_routed.yaml"):
        cfg = load_config(REPO / "experiments" / name)
        assert cfg.experts and cfg.all_ensembles()


def test_small_config_has_every_comparison_of_the_brief():
    cfg = load_config(REPO / "experiments" / "cifar10_small.yaml")
    names = {e.name for e in cfg.all_ensembles()}
    modes = {(e.router.kind, e.mode) for e in cfg.all_ensembles()}
    assert {("learned", "top-1"), ("learned", "top-k"), ("learned", "full")} <= modes
    assert any(e.sampler == "ddim" for e in cfg.all_ensembles())
    taus = sorted({e.router.tau for e in cfg.all_ensembles() if e.group == "threshold"})
    assert taus == [0.2, 0.3, 0.4, 0.5, 0.7]
    assert any(n.endswith("fm-first-tau0.5") for n in names) and any(n.endswith("ddpm-first-tau0.5") for n in names)
    mono = [e for e in cfg.experts if e.cluster is None]
    assert len(mono) == 1 and mono[0].compute == cfg.clusters.k  # the monolithic model gets K experts' compute
    schedules = {e.schedule for e in cfg.experts if e.objective == "ddpm"}
    assert "flow-linear" in schedules and schedules - {"flow-linear"}


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["ensembles"][1]["experts"].__setitem__(0, "nope"), "unknown expert 'nope'"),
    (lambda d: d["ensembles"][1].__setitem__("router", "oracle"), "unknown router 'oracle'"),
    (lambda d: d["ensembles"][3].__setitem__("sampler", "dpm"), "unknown sampler 'dpm'"),
    (lambda d: d.__setitem__("colour", 1), "unknown key cifar10_toy.colour"),
    (lambda d: d["experts"][0].__setitem__("objective", "gan"), "unknown objective 'gan'"),
    (lambda d: d["experts"][0].__setitem__("cluster", 9), "cluster 9 is outside 0..3"),
    (lambda d: d["ensembles"][1]["experts"].pop(), "one expert per cluster"),
    (lambda d: d["threshold_sweeps"][0].__setitem__("fm", "fm-c9"), "unknown expert 'fm-c9'"),
    (lambda d: d["sampling"].__setitem__("n", "many"), "sampling.n must be int"),
])
def test_bad_configs_are_refused(mutate, message):
    d = _toy()
    mutate(d)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_config(d, "cifar10_toy")


def test_cli_refuses_unknown_expert_in_one_line(tmp_path):
    d = _toy()
    d["ensembles"][0]["experts"] = ["ghost"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    r = CliRunner().invoke(app, ["experiment", "run", str(path), "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "unknown expert 'ghost'" in lines[0], r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "out").exists()  # refused before any work


def test_cli_refuses_unknown_router_and_missing_file(tmp_path):
    d = _toy()
    d["ensembles"][1]["router"] = {"kind": "psychic"}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d))
    r = CliRunner().invoke(app, ["experiment", "run", str(path), "--device", "cpu"])
    assert r.exit_code == 1 and "unknown router 'psychic'" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(app, ["experiment", "run", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 1 and "does not exist" in r.output


def test_threshold_sweep_orderings():
    fm_first, ddpm_first = expand_sweep(ThresholdSweep("c0", ddpm="d", fm="f", taus=(0.3,)))
    assert fm_first.name == "c0-fm-first-tau0.3" and fm_first.router.low == ("d",) and fm_first.router.high == ("f",)
    assert ddpm_first.router.low == ("f",) and ddpm_first.router.high == ("d",)
    assert fm_first.mode == "top-1" and fm_first.router.tau == 0.3


def test_routed_config_covers_the_remaining_comparisons():
    """Issue 7's gaps: top-1 and full vs monolithic, 1 vs 2 DDPM, the sweep, all with two training seeds."""
    cfg = load_config(REPO / "experiments" / "cifar10_routed.yaml")
    assert cfg.train.training_seeds == (0, 1) and cfg.train.workers > 1 and cfg.train.budget_s is not None
    assert cfg.budget_s is not None and cfg.budget_s + 60 < 510  # the whole run fits ~8.5 min of one device call
    ens = {e.name: e for e in cfg.all_ensembles()}
    fm4 = {"fm-c0", "fm-c1", "fm-c2", "fm-c3"}
    routed = {e.mode for e in ens.values() if e.router.kind == "learned" and set(e.experts) == fm4}
    assert routed == {"top-1", "top-k", "full"}
    ddpm = lambda e: sum(cfg.expert(n).objective == "ddpm" for n in e.experts)  # noqa: E731
    mixes = {ddpm(e) for e in ens.values() if e.router.kind == "learned" and e.mode == "top-k"}
    assert mixes == {0, 1, 2}
    taus = sorted({e.router.tau for e in ens.values() if e.group == "threshold" and e.router.kind == "threshold"})
    assert taus == [0.2, 0.3, 0.4, 0.5, 0.7]
    pairs = {(c.a, c.b) for c in cfg.all_comparisons()}
    assert {("fm4-top2", "monolithic"), ("fm4-top1", "monolithic"), ("fm4-full", "monolithic"),
            ("ddpm1-fm3-top2", "fm4-top2"), ("ddpm2-fm2-top2", "ddpm1-fm3-top2")} <= pairs
    assert ("c0-fm-first-tau0.5", "c0-ddpm-first-tau0.5") in pairs  # the sweep's orderings, per τ
    names = list(ens)  # most important first: the claims before the sweep
    assert names.index("monolithic") < names.index("ddpm2-fm2-top2") < names.index("c0-fm-first-tau0.2")
    assert not cfg.data.train.startswith("/")  # relative to the repository root, where the device run starts
    mono = [e for e in cfg.experts if e.cluster is None]
    assert len(mono) == 1 and mono[0].compute == cfg.clusters.k


def test_training_seeds_default_to_the_single_seed():
    d = _toy()
    assert parse_config(d, "toy").train.training_seeds == (0,)
    d["train"]["seed"] = 3
    assert parse_config(d, "toy").train.training_seeds == (3,)
    d = _toy()
    d["train"]["seeds"] = [2, 5]
    assert parse_config(d, "toy").train.training_seeds == (2, 5)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["train"].update(seed=0, seeds=[0, 1]), "give train.seed or train.seeds, not both"),
    (lambda d: d["train"].update(seeds=[1, 1]), "train.seeds must be distinct"),
    (lambda d: d["train"].update(workers=0), "train.workers must be at least 1"),
    (lambda d: d["train"].update(seeds=0), "cifar10_toy.train.seeds must be a list"),
    (lambda d: d.__setitem__("comparisons", [{"a": "hom-top2", "b": "nope"}]), "unknown ensemble 'nope'"),
    (lambda d: d.__setitem__("comparisons", [{"a": "hom-top2"}]), "needs 'b'"),
])
def test_bad_training_settings_are_refused(mutate, message):
    d = _toy()
    mutate(d)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_config(d, "cifar10_toy")


def test_sweep_comparisons_pair_the_orderings_at_each_tau():
    d = _toy()
    d["comparisons"] = [{"a": "hom-top2", "b": "monolithic"}]
    cfg = parse_config(d, "toy")
    assert [(c.a, c.b) for c in cfg.all_comparisons()] == [("hom-top2", "monolithic"),
                                                           ("c0-fm-first-tau0.3", "c0-ddpm-first-tau0.3")]
    d["threshold_sweeps"][0]["orderings"] = ["fm-first"]  # one ordering: nothing to pair
    assert len(parse_config(d, "toy").all_comparisons()) == 1
