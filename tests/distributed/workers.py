"""Worker entry points run by ``torchrun`` in the distributed tests: ``python workers.py NAME ARGS...``."""

from __future__ import annotations

import sys
from pathlib import Path


def extract(shard: str, n: str, shard_size: str, out: str) -> None:
    from hddm_p2p.cluster._reader import iter_samples
    from hddm_p2p.cluster.extract import extract_features
    from hddm_p2p.cluster.features import PixelExtractor
    from hddm_p2p.train.distributed import init_distributed, shutdown

    d = init_distributed("cpu")
    assert d.world == 2
    assert extract_features(iter_samples(Path(shard), int(n)), PixelExtractor(8), Path(out),
                            shard_size=int(shard_size), progress=False, dist=d)
    (Path(out) / f"rank{d.rank}.done").touch()
    shutdown(d)


if __name__ == "__main__":
    globals()[sys.argv[1]](*sys.argv[2:])
