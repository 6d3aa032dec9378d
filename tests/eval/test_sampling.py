"""Sharded evaluation sampling: the same image per global index whatever the world size or batch."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.eval.sampling import merge_shards, per_sample_noise, sample_for_eval, sample_seed

ROOT = Path(__file__).resolve().parents[2]


def make_sampler():
    """A small fixed conv net on per-sample noise, conditioned on the index (class = index mod 10)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(8, 3, 3, padding=1))
    emb = torch.nn.Embedding(10, 3)

    @torch.no_grad()
    def sampler(indices, seeds):
        x = per_sample_noise(seeds, (3, 16, 16))
        x = x + emb(torch.tensor(indices) % 10)[:, :, None, None]
        return torch.tanh(net(x))  # (B, 3, 16, 16) in [-1, 1]

    return sampler


def _read(d: Path, n: int) -> np.ndarray:
    return np.stack([np.asarray(Image.open(d / f"{i:06d}.png")) for i in range(n)])


def test_world_size_two_equals_world_size_one(tmp_path):
    sampler, n = make_sampler(), 11
    sample_for_eval(sampler, n, 4, tmp_path / "w1", 0, 1, seed=7, progress=False)
    merge_shards(tmp_path / "w1", n)
    for rank in (1, 0):  # order does not matter
        paths = sample_for_eval(sampler, n, 3, tmp_path / "w2", rank, 2, seed=7, progress=False)
        assert [int(p.stem) for p in paths] == list(range(rank, n, 2))
    assert len(merge_shards(tmp_path / "w2", n)) == n
    a, b = _read(tmp_path / "w1", n), _read(tmp_path / "w2", n)
    assert a.shape == (n, 16, 16, 3)
    np.testing.assert_array_equal(a, b)
    assert len({x.tobytes() for x in a}) == n  # every sample differs
    assert not list((tmp_path / "w2").glob("rank-*"))


def test_seed_changes_images_and_resume_skips_existing(tmp_path):
    sampler, n = make_sampler(), 4
    calls = []

    def counting(indices, seeds):
        calls.extend(indices)
        return sampler(indices, seeds)

    sample_for_eval(counting, n, 2, tmp_path / "s0", seed=0, progress=False)
    (tmp_path / "s0" / "rank-000-of-001" / "000002.png").unlink()  # an interrupted run
    calls.clear()
    sample_for_eval(counting, n, 2, tmp_path / "s0", seed=0, progress=False)
    assert calls == [2]
    merge_shards(tmp_path / "s0", n)
    sample_for_eval(sampler, n, 2, tmp_path / "s1", seed=1, progress=False)
    merge_shards(tmp_path / "s1", n)
    assert not np.array_equal(_read(tmp_path / "s0", n), _read(tmp_path / "s1", n))
    assert sample_seed(0, 1) != sample_seed(1, 0) and sample_seed(0, 0) == sample_seed(0, 0)


def test_missing_samples_and_bad_sampler_output_are_errors(tmp_path):
    sample_for_eval(make_sampler(), 6, 3, tmp_path, 0, 2, progress=False)
    with pytest.raises(DataError, match=r"3 of 6 samples are missing .* \(first: \[1, 3, 5\]\)"):
        merge_shards(tmp_path, 6)
    with pytest.raises(ShapeError, match="must return \\(B, 3, H, W\\)"):
        sample_for_eval(lambda idx, seeds: torch.zeros(len(idx), 16, 16), 2, 2, tmp_path / "bad", progress=False)
    with pytest.raises(DataError, match="bad sharding"):
        sample_for_eval(make_sampler(), 4, 2, tmp_path, 2, 2)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_torchrun_two_processes_gloo_matches_one_process(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_sampling import make_sampler
        from hddm_p2p.eval.sampling import sample_for_eval_distributed
        sample_for_eval_distributed(make_sampler(), 9, 2, Path(sys.argv[1]), seed=3, progress=False)
    """))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path / "tr")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170)
    assert r.returncode == 0, r.stderr[-3000:]
    sample_for_eval(make_sampler(), 9, 5, tmp_path / "one", seed=3, progress=False)
    merge_shards(tmp_path / "one", 9)
    np.testing.assert_array_equal(_read(tmp_path / "tr", 9), _read(tmp_path / "one", 9))
