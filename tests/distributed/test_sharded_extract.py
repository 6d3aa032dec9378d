"""Feature extraction for clustering under torchrun: two ranks write alternate shards; the merged result
equals the one-process extraction, row for row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hddm_p2p.cluster._reader import iter_samples
from hddm_p2p.cluster.extract import extract_features, load_features
from hddm_p2p.cluster.features import PixelExtractor
from tests.distributed.conftest import torchrun

pytestmark = pytest.mark.slow
N, SHARD = 300, 64  # 5 shards: rank 0 writes 0, 2, 4; rank 1 writes 1, 3


def test_two_rank_extraction_merges_to_the_one_process_result(cifar_test_shard, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert extract_features(iter_samples(cifar_test_shard, N), PixelExtractor(8), one, shard_size=SHARD,
                            progress=False)
    torchrun("extract", cifar_test_shard, N, SHARD, two)
    assert (two / "rank0.done").exists() and (two / "rank1.done").exists()
    a, b = load_features(one), load_features(two)
    assert a.keys == b.keys and len(b.keys) == N
    np.testing.assert_allclose(a.features, b.features, rtol=0, atol=1e-6)
    assert json.loads((one / "index.json").read_text()) == json.loads((two / "index.json").read_text())
