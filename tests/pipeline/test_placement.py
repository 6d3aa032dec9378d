"""Expert-parallel generation: the bin-packing plan, and sampling with experts placed on two "devices"
(both the CPU here: the plan, the moves out and the gathers back all run) gives the single-device images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import hddm_p2p.cli.app  # noqa: F401  (registers the commands)
from hddm_p2p.cli.root import app
from hddm_p2p.errors import SpecError
from hddm_p2p.pipeline.placement import parameter_bytes, parse_devices, place_experts, plan_placement

MiB = 2**20


def test_plan_two_gpus_balances_bytes():
    sizes = [7 * MiB, 5 * MiB, 4 * MiB, 3 * MiB, 1 * MiB]
    plan = plan_placement(sizes, ["cuda:0", "cuda:1"])
    # largest first onto the least loaded: 7→0, 5→1, 4→1, 3→0, 1→1 (ties go to the earlier device)
    assert plan.devices == ("cuda:0", "cuda:1", "cuda:1", "cuda:0", "cuda:1")
    assert plan.loads == {"cuda:0": 10 * MiB, "cuda:1": 10 * MiB}


def test_plan_four_gpus_respects_capacity():
    sizes = [6 * MiB, 6 * MiB, 5 * MiB, 2 * MiB, 2 * MiB, 2 * MiB]
    devs = [f"cuda:{i}" for i in range(4)]
    caps = {"cuda:0": 6 * MiB, "cuda:1": 6 * MiB, "cuda:2": 8 * MiB, "cuda:3": 4 * MiB}
    plan = plan_placement(sizes, devs, caps)
    for d in devs:
        assert plan.loads[d] <= caps[d]
    assert sum(plan.loads.values()) == sum(sizes)
    assert plan.devices[0] != plan.devices[1]  # two 6 MiB experts cannot share a 6 MiB card
    assert plan.devices[2] == "cuda:2"  # the only card left with room for 5 MiB


def test_plan_expert_too_big_is_an_error():
    with pytest.raises(SpecError, match="fits on none of the devices"):
        plan_placement([9 * MiB], ["cuda:0", "cuda:1"], {"cuda:0": 8 * MiB, "cuda:1": 8 * MiB})


def test_parse_devices():
    assert parse_devices("cpu, cpu") == ("cpu", "cpu")
    assert parse_devices(None) is None
    with pytest.raises(SpecError, match="not available"):
        parse_devices("cuda:7")
    with pytest.raises(SpecError, match="not a device"):
        parse_devices("gpu0")


def test_parameter_bytes_from_header(world):
    from safetensors.torch import load_file

    from hddm_p2p.pipeline.lockfile import WEIGHTS

    weights = world.dirs[0] / WEIGHTS
    tensors = load_file(weights)
    assert parameter_bytes(weights) == sum(t.numel() * t.element_size() for t in tensors.values())
    assert parameter_bytes(weights, torch.bfloat16) == sum(t.numel() * 2 for t in tensors.values()
                                                          if t.is_floating_point())


def test_placed_ensemble_samples_like_one_device(threshold_lock):
    from hddm_p2p.pipeline.ensemble_loader import load_ensemble

    noise = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    one = load_ensemble(threshold_lock).ensemble("full", 3).sample(noise, steps=3)
    loaded = load_ensemble(threshold_lock)
    placed, plan = place_experts(loaded.experts, ["cpu", "cpu"], "cpu", capacity={})
    from hddm_p2p.diffusion import Ensemble

    two = Ensemble(list(zip(placed, loaded.specs)), loaded.router, mode="full").sample(noise, steps=3)
    assert torch.equal(one, two)
    assert sorted(plan.devices) == ["cpu"] * 3 and sum(plan.loads.values()) > 0
    assert all(p.sends == p.gathers == p.expert.calls > 0 for p in placed)


def test_generate_with_devices_same_images(threshold_lock, tmp_path):
    from hddm_p2p.pipeline.generate import GenerateConfig, generate

    def pixels(out):
        from PIL import Image
        return np.stack([np.asarray(Image.open(p)) for p in sorted((out / "samples").glob("*.png"))])

    kw = dict(ensemble=threshold_lock, n=4, steps=3, solver="euler", seed=3, progress=False)
    generate(GenerateConfig(out=tmp_path / "a", **kw))
    res = runner_generate(threshold_lock, tmp_path / "b", "--devices", "cpu,cpu", "--seed", "3")
    assert res.exit_code == 0, res.output
    assert (pixels(tmp_path / "a") == pixels(tmp_path / "b")).all()
    record = json.loads((tmp_path / "b" / "generate.json").read_text())
    assert record["placement"]["experts"] == ["cpu", "cpu", "cpu"]
    assert record["settings"]["devices"] == ["cpu", "cpu"]


def test_devices_with_offload_is_one_line_error(threshold_lock, tmp_path):
    res = runner_generate(threshold_lock, tmp_path / "c", "--devices", "cpu,cpu", "--offload")
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and "do not combine" in lines[0], res.output
    assert not (tmp_path / "c").exists()


def runner_generate(lock, out, *extra):
    return CliRunner().invoke(app, ["generate", "--ensemble", str(lock), "--out", str(out), "--n", "4", "--steps", "3",
                                    "--solver", "euler", "--no-progress", "--json", *extra])
