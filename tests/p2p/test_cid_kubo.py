"""Golden CIDs: the local computation against the real Kubo binary (``ipfs add --only-hash``)."""

from __future__ import annotations

import pytest

from hddm_p2p.p2p.cid import ImportProfile, hash_file
from tests.p2p.test_cid import MiB, pattern

pytestmark = pytest.mark.kubo

FLAGS = ["--cid-version", "1", "--raw-leaves", "--chunker", "size-1048576", "--max-file-links", "1024"]


def kubo_only_hash(node, path, *flags: str) -> str:
    return node.ipfs("add", "--only-hash", "--quieter", *flags, str(path)).strip()


@pytest.mark.parametrize("size", [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 12345])
def test_profile_cids_match_kubo(kubo_node, tmp_path, size):
    path = tmp_path / "f.bin"
    path.write_bytes(pattern(size))
    ours = hash_file(path).cid
    assert ours == kubo_only_hash(kubo_node, path, *FLAGS)
    assert ours == kubo_only_hash(kubo_node, path)  # the repo's unixfs-v1-2025 profile, no flags


@pytest.mark.parametrize(("n_bytes", "chunk", "links"), [
    (1024, 1, 1024),   # exactly one full node of 1024 leaves
    (1025, 1, 1024),   # one leaf more: a second level appears
    (2900, 100, 3),    # 29 leaves, 3 links per node: four levels, ragged at every level
    (2700, 100, 3),    # 27 = 3^3 leaves: a perfectly full tree
    (12345, 7, 5),
])
def test_deep_dags_match_kubo(kubo_node, tmp_path, n_bytes, chunk, links):
    """Multi-level DAGs at toy sizes: the same layout code with smaller chunks and fan-out."""
    path = tmp_path / "f.bin"
    path.write_bytes(pattern(n_bytes))
    ours = hash_file(path, ImportProfile("test", chunk_size=chunk, max_links=links)).cid
    assert ours == kubo_only_hash(kubo_node, path, "--cid-version", "1", "--raw-leaves",
                                  "--chunker", f"size-{chunk}", "--max-file-links", str(links))
