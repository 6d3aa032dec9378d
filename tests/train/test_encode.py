"""`hddm data encode` with a tiny random VAE, and latent experts initialised from a DiT checkpoint."""

import json

import pytest
import torch
from typer.testing import CliRunner

import hddm_p2p.cli.data_encode  # noqa: F401  registers `data encode`
import hddm_p2p.cli.train_expert  # noqa: F401
from hddm_p2p import Ensemble
from hddm_p2p.cli.root import app
from hddm_p2p.models import DiT, get_preset, load_expert
from hddm_p2p.train.data import Filter, load_in_memory
from hddm_p2p.train.encode import read_latent_shards
from hddm_p2p.train.vae import decode, encode, get_vae

runner = CliRunner()


@pytest.fixture(scope="module")
def latents(tmp_path_factory, cifar_shard):
    out = tmp_path_factory.mktemp("latents")
    res = runner.invoke(app, ["data", "encode", "--data", str(cifar_shard), "--out", str(out), "--vae", "tiny-random",
                              "--image-resolution", "64", "--limit", "40", "--batch-size", "16", "--shard-size", "24",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    return out


def test_encode_writes_shards_and_index(latents, cifar_small):
    index = json.loads((latents / "latents.json").read_text())
    assert index["format"] == "hddm-latents/1" and index["count"] == 40
    assert index["vae"] == {"id": "tiny-random", "scaling_factor": 0.18215, "image_resolution": 64}
    assert (index["channels"], index["resolution"]) == (4, 8) and len(index["shards"]) == 2
    data = read_latent_shards(latents)
    assert data.x.shape == (40, 4, 8, 8) and data.x.dtype == torch.float16 and data.space == "latent"
    assert data.keys == cifar_small.keys[:40] and torch.equal(data.labels, cifar_small.labels[:40])
    # the stored latents are the VAE's encoding of the same images
    img = load_in_memory(cifar_small.source.split(",")[0], 64, Filter(limit=2)).model_input(torch.arange(2), "cpu")
    torch.testing.assert_close(data.x[:2].float(), encode(get_vae("tiny-random"), img), atol=2e-3, rtol=2e-3)
    only = read_latent_shards(latents, Filter(labels=frozenset({int(data.labels[0])})))
    assert 0 < len(only) < 40 and (only.labels == data.labels[0]).all()


def test_latent_expert_from_a_dit_checkpoint(latents, tmp_path):
    torch.manual_seed(0)  # a checkpoint in DiT's layout: AdaLN-Zero, 1000 classes, learned sigma
    ref = DiT(get_preset("tiny", input_size=8, in_channels=4, adaln="zero", condition="class", num_classes=1000,
                         learn_sigma=True))
    ckpt = tmp_path / "DiT-tiny.pt"
    torch.save(ref.state_dict(), ckpt)
    out = tmp_path / "latent-fm"
    res = runner.invoke(app, ["train", "expert", "--data", str(latents), "--space", "latent", "--arch", "tiny",
                              "--init-from", str(ckpt), "--steps", "2", "--batch-size", "8", "--out", str(out),
                              "--device", "cpu", "--log-every", "1"])
    assert res.exit_code == 0, res.output
    desc = json.loads((out / "expert.json").read_text())
    assert desc["time_scale"] == 999.0 and desc["architecture"]["config"]["discrete_time"] is True
    assert desc["data_space"]["kind"] == "latent" and desc["data_space"]["vae"]["id"] == "tiny-random"
    start = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["init_from"].endswith("DiT-tiny.pt")
    model, spec, _ = load_expert(out)
    assert spec.time_scale == 999.0 and spec.clip == 20.0
    z = Ensemble([(model, spec)]).sample(torch.randn(2, 4, 8, 8), steps=2)
    assert decode(get_vae("tiny-random"), z).shape == (2, 3, 64, 64)


def test_checkpoint_that_does_not_fit_names_the_parameter(tmp_path, cifar_shard):
    torch.manual_seed(0)
    ckpt = tmp_path / "DiT-4ch.pt"
    torch.save(DiT(get_preset("tiny", input_size=32, in_channels=4, adaln="zero")).state_dict(), ckpt)
    res = runner.invoke(app, ["train", "expert", "--data", str(cifar_shard), "--arch", "tiny", "--limit", "16",
                              "--init-from", str(ckpt), "--steps", "1", "--batch-size", "8", "--out", str(tmp_path / "x"),
                              "--device", "cpu"])
    assert res.exit_code == 1 and "x_embedder.proj.weight" in res.output
    assert not (tmp_path / "x" / "checkpoints").exists()


def test_latent_space_needs_latent_shards(tmp_path, cifar_shard):
    res = runner.invoke(app, ["train", "expert", "--data", str(cifar_shard), "--space", "latent", "--arch", "tiny",
                              "--out", str(tmp_path / "y")])
    assert res.exit_code == 1 and "hddm data encode" in res.output
