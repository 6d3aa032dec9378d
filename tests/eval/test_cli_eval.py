"""`hddm eval ...` driven as a user drives it, on real CIFAR-10 shards with a classifier trained by the CLI."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from hddm_p2p.cli.app import app
from hddm_p2p.eval.images import iter_labeled, save_png

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["eval", *map(str, args)])


def _one_line_error(r, *needles):
    assert r.exit_code == 1, r.output
    err = r.output.strip()
    assert err.startswith("error:") and "Traceback" not in err, err
    assert len(err.replace("\n", " ").split("error:")) == 2  # one message (rich may wrap it)
    for n in needles:
        assert n in " ".join(err.split()), err


@pytest.fixture(scope="module")
def real_dir(cifar, tmp_path_factory) -> Path:
    """150 real training images as class-named subdirectories of PNGs (stand-ins for good samples)."""
    d = tmp_path_factory.mktemp("real")
    for i, (img, label) in enumerate(iter_labeled(cifar / "train-0001.tar.gz", 150)):
        save_png(img, d / f"class{label}" / f"{i:06d}.png")
    return d


@pytest.fixture(scope="module")
def noise_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("noise")
    for i, img in enumerate(torch.randint(0, 256, (150, 3, 32, 32), dtype=torch.uint8,
                                          generator=torch.Generator().manual_seed(0))):
        save_png(img, d / f"{i:06d}.png")
    return d


@pytest.fixture(scope="module")
def ref_stats(quick_classifier, cifar, tmp_path_factory) -> Path:
    clf, _, _ = quick_classifier
    out = tmp_path_factory.mktemp("stats") / "cifar10-test.npz"
    r = runner.invoke(app, ["eval", "stats", "--data", str(cifar / "test-0000.tar.gz"), "--limit", "300", "--extractor",
                            f"classifier:{clf}", "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    return out


def test_stats_then_fd_records_name_metric_extractor_and_accuracy(quick_classifier, ref_stats, real_dir, noise_dir,
                                                                  tmp_path):
    clf, desc, _ = quick_classifier
    r = _run("fid", "--gen", real_dir, "--ref", ref_stats, "--extractor", f"classifier:{clf}", "--out",
             tmp_path / "real.json", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    assert rec == json.loads((tmp_path / "real.json").read_text())[0]
    assert (rec["metric"], rec["extractor"], rec["extractor_test_accuracy"]) == ("FD", desc["id"], desc["test_accuracy"])
    assert (rec["n_gen"], rec["n_ref"], rec["feature_dim"], rec["warnings"]) == (150, 300, 64, [])
    r = _run("fid", "--gen", noise_dir, "--ref", ref_stats, "--extractor", f"classifier:{clf}", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["value"] > 3 * rec["value"]  # real photos are far closer to real ones than noise is
    r = _run("fid", "--gen", real_dir, "--ref", ref_stats, "--extractor", f"classifier:{clf}")  # the rich table
    flat = "".join(r.output.split())
    assert r.exit_code == 0 and "FD" in flat and desc["id"] in flat and f"{desc['test_accuracy']:.2%}" in flat


def test_fd_against_a_directory_reference_computes_it_on_the_fly(quick_classifier, real_dir):
    clf, _, _ = quick_classifier
    r = _run("fid", "--gen", real_dir / "class3", "--ref", real_dir, "--extractor", f"classifier:{clf}", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    assert rec["n_ref"] == 150 and rec["ref"] == str(real_dir) and rec["value"] > 0
    assert any("< 2×64" in w for w in rec["warnings"])  # a single class has fewer than 128 images


def test_bad_input_is_a_one_line_error(quick_classifier, ref_stats, real_dir, tmp_path):
    clf, _, _ = quick_classifier
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next(real_dir.rglob("*.png")), one / "000000.png")
    _one_line_error(_run("fid", "--gen", one, "--ref", ref_stats, "--extractor", f"classifier:{clf}"),
                    "at least 2 images per set, got 1")
    _one_line_error(_run("fid", "--gen", real_dir, "--ref", ref_stats, "--extractor", "vgg-face"),
                    "unknown feature extractor 'vgg-face'")
    _one_line_error(_run("fid", "--gen", real_dir, "--ref", "cifar10-test"),
                    "--inception-weights PATH", "--extractor classifier:PATH")
    other = tmp_path / "other-clf"
    shutil.copytree(clf, other)
    state = load_file(other / "model.safetensors")
    state["head.bias"] = state["head.bias"] + 1.0  # same architecture, other weights: another extractor
    save_file(state, other / "model.safetensors")
    r = _run("fid", "--gen", real_dir, "--ref", ref_stats, "--extractor", f"classifier:{other}")
    ref_id = json.loads((clf / "classifier.json").read_text())["id"]
    _one_line_error(r, ref_id, "cifar10-resnet@", "recompute them with `hddm eval stats`")
    _one_line_error(_run("stats", "--data", real_dir, "--extractor", f"classifier:{clf}", "--out", tmp_path / "s.txt"),
                    "must end in .npz")


def test_lpips_cli_with_a_local_backbone(real_dir, tmp_path):
    _one_line_error(_run("lpips", "--gen", real_dir, "--groups", "subdirs"), "--lpips-backbone PATH")
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "alexnet.pth")
    r = _run("lpips", "--gen", real_dir, "--groups", "subdirs", "--per-group", 3, "--lpips-backbone",
             tmp_path / "alexnet.pth", "--json")
    assert r.exit_code == 0, r.output
    rec = json.loads(r.output)
    assert rec["metric"] == "LPIPS-diversity" and rec["extractor"].startswith("lpips-alex@")
    assert rec["n_groups"] == 10 and rec["group_sizes"] == [3] and rec["value"] > 0 and rec["std"] >= 0
