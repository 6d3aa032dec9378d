"""`hddm train expert` driven as a user drives it, on real CIFAR-10 shards."""

import json

import pytest
import torch
from safetensors import safe_open
from typer.testing import CliRunner

import hddm_p2p.cli.train_expert  # noqa: F401  registers `train expert`
from hddm_p2p import Ensemble
from hddm_p2p.cli.root import app
from hddm_p2p.models import load_expert

runner = CliRunner()
BASE = ["train", "expert", "--arch", "tiny", "--batch-size", "8", "--limit", "48", "--device", "cpu",
        "--log-every", "2", "--ckpt-every", "2"]


def _run(*args):
    return runner.invoke(app, [*BASE, *map(str, args)])


@pytest.fixture(scope="module")
def expert_dir(tmp_path_factory, cifar_shard):
    out = tmp_path_factory.mktemp("experts") / "cifar-ddpm-c0"
    res = _run("--data", cifar_shard.parent / "train-000[0].tar.gz", "--objective", "ddpm", "--schedule",
               "vp-linear", "--condition", "class", "--steps", "4", "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_writes_a_valid_expert_dir(expert_dir):
    desc = json.loads((expert_dir / "expert.json").read_text())
    assert desc["kind"] == "expert" and desc["name"] == "cifar-ddpm-c0"
    assert (desc["objective"], desc["prediction"], desc["schedule"]) == ("ddpm", "epsilon", "vp-linear")
    assert desc["time_scale"] == 1000.0
    assert desc["architecture"]["family"] == "dit" and desc["architecture"]["preset"] == "tiny"
    assert desc["data_space"] == {"kind": "pixel", "resolution": 32, "channels": 3, "value_range": [-1.0, 1.0],
                                  "vae": None}
    assert desc["conditioning"]["kind"] == "class" and desc["conditioning"]["num_classes"] == 10
    assert desc["cluster"] is None
    t = desc["training"]
    assert t["steps"] == 4 and t["batch_size"] == 8 and t["images_seen"] == 32 and t["device"] == "cpu"
    assert t["final_loss"] > 0
    with safe_open(str(expert_dir / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["hddm.format"] == "hddm-expert/1"
    assert json.loads(meta["hddm.arch"]) == desc["architecture"]["config"]
    rows = [json.loads(line) for line in (expert_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["event"] == "start" and rows[0]["arch"] == "tiny" and rows[0]["samples"] == 48
    assert rows[0]["residual"] == "auto"  # bf16 on a GPU under bf16 autocast; fp32 here
    assert [r["step"] for r in rows] == [0, 2, 4] and all("loss" in r and "images_per_s" in r for r in rows[1:])


def test_fp32_residual_flag_reaches_the_run(tmp_path, cifar_shard):
    out = tmp_path / "fp32-residual"
    res = _run("--data", cifar_shard, "--objective", "fm", "--schedule", "flow-linear", "--steps", "2",
               "--fp32-residual", "--out", out)
    assert res.exit_code == 0, res.output
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["residual"] == "fp32"


def test_expert_json_is_a_valid_manifest_description(expert_dir):
    """The publisher's strict pydantic model (extra fields forbidden) accepts what training wrote."""
    from hddm_p2p.p2p.manifests.expert import ExpertDescription

    desc = json.loads((expert_dir / "expert.json").read_text())
    desc.pop("kind")
    ExpertDescription.model_validate_json(json.dumps(desc))


def test_load_expert_and_sample_with_the_ensemble(expert_dir):
    model, spec, desc = load_expert(expert_dir)
    assert spec.prediction.value == "epsilon" and spec.schedule == "vp-linear" and spec.time_scale == 1000.0
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    ens = Ensemble([(model, spec)], router=None, mode="top-1")
    x = ens.sample(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)), steps=3,
                   cond=torch.tensor([1, 7]), cfg_scale=2.0)
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()
    half, _, _ = load_expert(expert_dir, dtype=torch.bfloat16)
    assert half.blocks[0].attn.qkv.weight.dtype == torch.bfloat16


def test_cluster_restriction_fills_the_cluster_block(tmp_path, cifar_shard, cifar_small):
    from safetensors.torch import save_file

    clusters = tmp_path / "clusters"
    clusters.mkdir()
    table = {k: i % 2 for i, k in enumerate(cifar_small.keys)}
    (clusters / "assignments.json").write_text(json.dumps(table))
    save_file({"centroids": torch.arange(6.0).view(2, 3)}, str(clusters / "centroids.safetensors"),
              metadata={"feature_extractor": "pixels-8x8", "feature_dim": "3"})
    out = tmp_path / "c1"
    res = _run("--data", cifar_shard, "--steps", "1", "--out", out, "--assignments", clusters / "assignments.json",
               "--cluster", "1")
    assert res.exit_code == 0, res.output
    cluster = json.loads((out / "expert.json").read_text())["cluster"]
    assert cluster["id"] == 1 and cluster["size"] == 32 and cluster["feature_extractor"] == "pixels-8x8"
    assert cluster["centroid"] == [3.0, 4.0, 5.0] and len(cluster["assignments_sha256"]) == 64
    from hddm_p2p.p2p.manifests.expert import Cluster

    Cluster.model_validate_json(json.dumps(cluster))
    (clusters / "centroids.safetensors").unlink()
    res = _run("--data", cifar_shard, "--steps", "1", "--out", tmp_path / "c2", "--assignments",
               clusters / "assignments.json", "--cluster", "1")
    assert res.exit_code == 1 and "centroids.safetensors is missing" in res.output


@pytest.mark.parametrize("args,needle", [
    (["--arch", "DiT-XXL/2"], "DiT-XL/2"),
    (["--data", "/nonexistent/shards"], "does not exist"),
    (["--data", "/nonexistent/*.tar"], "no files match"),
    (["--objective", "eps"], "ddpm"),
    (["--assignments", "/nonexistent/a.json", "--cluster", "0"], "does not exist"),
])
def test_bad_input_fails_before_training(tmp_path, cifar_shard, args, needle):
    out = tmp_path / "bad"
    res = _run("--data", cifar_shard, "--steps", "1", "--out", out, *args)
    assert res.exit_code == 1 and needle in res.output and "Traceback" not in res.output
    assert not (out / "model.safetensors").exists() and not (out / "checkpoints").exists()


def test_existing_checkpoint_needs_resume(expert_dir, cifar_shard):
    res = _run("--data", cifar_shard, "--steps", "4", "--out", expert_dir)
    assert res.exit_code == 1 and "--resume" in res.output


def test_text_conditioned_expert_records_its_encoder(tmp_path, cifar_shard):
    out = tmp_path / "text"
    res = _run("--data", cifar_shard, "--condition", "text", "--text-encoder", "bytes-16", "--steps", "2",
               "--out", out, "--objective", "v", "--schedule", "vp-cosine")
    assert res.exit_code == 0, res.output
    desc = json.loads((out / "expert.json").read_text())
    assert desc["conditioning"] == {"kind": "text", "num_classes": None, "class_names": None,
                                    "text_encoder": {"id": "bytes-16", "width": 16, "max_tokens": 32}}
    model, spec, _ = load_expert(out)
    from hddm_p2p.train.text import get_text_encoder

    cond = get_text_encoder("bytes-16", 32)(["a photo of a cat", "a photo of a ship"])
    assert model(torch.randn(2, 3, 32, 32), torch.tensor([10.0, 900.0]), cond).shape == (2, 3, 32, 32)


def test_streaming_run_then_ctrl_c_then_resume(tmp_path, cifar_shard):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "stream"
    code = "import hddm_p2p.cli.train_expert; from hddm_p2p.cli.root import app; app(prog_name='hddm')"
    args = [*BASE, "--data", str(cifar_shard), "--stream", "--steps", "100000", "--out", str(out), "--log-every", "1",
            "--ckpt-every", "1000"]
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline, metrics = time.time() + 180, out / "metrics.jsonl"
    while time.time() < deadline and proc.poll() is None:  # wait for the first training step's row
        if metrics.exists() and '"loss"' in metrics.read_text():
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    state = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] >= 1 and state["data"]["offset"] == 8 * state["step"]
    res = _run("--data", cifar_shard, "--stream", "--steps", state["step"] + 1, "--out", out, "--resume")
    assert res.exit_code == 0, res.output
    assert json.loads((out / "expert.json").read_text())["training"]["steps"] == state["step"] + 1
