import json

import numpy as np
import pytest
from safetensors import safe_open

from hddm_p2p.cluster._reader import iter_samples
from hddm_p2p.cluster.extract import extract_features, load_features
from hddm_p2p.cluster.features import PixelExtractor
from hddm_p2p.errors import DataError

N, SHARD = 300, 64  # 5 shards, the last one partial


def _contents(d):
    """Every file's content; shards as (metadata, feature bytes), since safetensors orders metadata at random."""
    out = {}
    for p in sorted(d.iterdir()):
        if p.suffix == ".safetensors":
            with safe_open(str(p), "np") as f:
                out[p.name] = (f.metadata(), f.get_tensor("features").tobytes())
        else:
            out[p.name] = p.read_bytes()
    return out


def test_interrupted_extraction_resumes_to_the_same_result(cifar_test_shard, tmp_path):
    ex = PixelExtractor(8)
    full, part = tmp_path / "full", tmp_path / "part"
    assert extract_features(iter_samples(cifar_test_shard, N), ex, full, shard_size=SHARD, progress=False)

    # "killed" after two shards: whole shards only, no index
    assert not extract_features(iter_samples(cifar_test_shard, N), ex, part, shard_size=SHARD,
                                max_new_shards=2, progress=False)
    assert sorted(p.name for p in part.iterdir()) == ["shard-00000.safetensors", "shard-00001.safetensors"]
    with pytest.raises(DataError, match="did not finish"):
        load_features(part)
    first = (part / "shard-00000.safetensors").stat().st_mtime_ns

    assert extract_features(iter_samples(cifar_test_shard, N), ex, part, shard_size=SHARD, progress=False)
    assert (part / "shard-00000.safetensors").stat().st_mtime_ns == first  # skipped, not recomputed
    assert _contents(part) == _contents(full)
    fs = load_features(part)
    assert len(fs.keys) == N == fs.features.shape[0] and fs.dim == 192 and fs.extractor_id == "pixels-8x8"
    assert json.loads((part / "index.json").read_text())["count"] == N


def test_changed_data_under_existing_shards_is_refused(cifar_test_shard, tmp_path):
    ex = PixelExtractor(8)
    extract_features(iter_samples(cifar_test_shard, 100), ex, tmp_path, shard_size=SHARD, progress=False)
    with pytest.raises(DataError, match="other samples or another extractor"):
        extract_features(iter_samples(cifar_test_shard, 100), PixelExtractor(4), tmp_path, shard_size=SHARD,
                         progress=False)


def test_features_match_a_direct_computation(cifar_test_shard, tmp_path):
    ex = PixelExtractor(8)
    extract_features(iter_samples(cifar_test_shard, 70), ex, tmp_path, shard_size=SHARD, batch_size=16,
                     progress=False)
    fs = load_features(tmp_path)
    direct = ex([s.image() for s in iter_samples(cifar_test_shard, 70)])
    np.testing.assert_array_equal(fs.features, direct)


def test_npz_features(tmp_path):
    np.savez(tmp_path / "f.npz", keys=np.array(["a", "b"]), features=np.eye(2, 5))
    fs = load_features(tmp_path / "f.npz")
    assert fs.keys == ["a", "b"] and fs.features.dtype == np.float32 and fs.extractor_id == "file:f.npz"
