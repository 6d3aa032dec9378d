"""Publish/fetch throughput: hddm's KuboStore and local CIDs beside the ``ipfs`` CLI on the same node.

    python benchmarks/publish_fetch.py                     # 1 GiB safetensors file
    python benchmarks/publish_fetch.py --size-mib 64 --out bench-out

On one loopback-only ``KuboNode`` (a fresh temp repo), with a generated safetensors file of ``--size-mib``:

- CID: ``hddm_p2p.p2p.cid.hash_file`` (pure Python + hashlib, also yields sha256) vs ``ipfs add --only-hash``;
- add: ``KuboStore.add_file`` (streams over HTTP, hashes locally in the same read) vs ``ipfs add``;
- fetch: ``KuboStore.download`` (``cat`` into ``.part``, CID verified before rename) vs ``ipfs cat > file``.

Before each add the content is unpinned and garbage-collected, so both sides write every block.
Prints a table, and writes ``publish_fetch.json`` and ``publish_fetch.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import time
from pathlib import Path
from typing import Callable

from hddm_p2p.p2p.cid import UNIXFS_V1_2025, hash_file
from hddm_p2p.p2p.kubo_node import KuboNode
from hddm_p2p.p2p.safetensors_check import check_safetensors
from hddm_p2p.p2p.store.kubo import KuboStore

MiB = 1 << 20
ADD_FLAGS = ["--cid-version", "1", "--raw-leaves", "--chunker", f"size-{UNIXFS_V1_2025.chunk_size}",
             "--max-file-links", str(UNIXFS_V1_2025.max_links), "--quieter"]


def write_safetensors(path: Path, size_mib: int) -> Path:
    """A valid safetensors file holding one U8 tensor of ``size_mib`` MiB of random bytes."""
    n = size_mib * MiB
    header = json.dumps({"__metadata__": {"hddm.format": "benchmark"},
                         "w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for _ in range(size_mib):
            f.write(os.urandom(MiB))
    check_safetensors(path)
    return path


def timed(fn: Callable[[], str]) -> tuple[float, str]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def forget(node: KuboNode, cid: str) -> None:
    """Unpin and garbage-collect ``cid`` so the next add writes every block again."""
    node.ipfs("pin", "rm", cid)
    node.ipfs("repo", "gc", "--quiet")


def cli_cat(node: KuboNode, cid: str, dest: Path) -> str:
    with open(dest, "wb") as out:
        subprocess.run([str(node.binary), "cat", cid], env=node._env(), stdout=out, check=True)
    return cid


def run(size_mib: int, workdir: Path) -> list[dict]:
    src = write_safetensors(workdir / "model.safetensors", size_mib)
    size = src.stat().st_size
    rows = []

    def row(task: str, tool: str, seconds: float, cid: str) -> None:
        rows.append({"task": task, "tool": tool, "seconds": seconds, "MB_per_s": size / 1e6 / seconds, "cid": cid})

    with KuboNode(name="bench") as node:
        store = KuboStore(node.api)
        row("cid", "hddm hash_file", *timed(lambda: hash_file(src).cid))
        row("cid", "ipfs add --only-hash", *timed(lambda: node.ipfs("add", "--only-hash", *ADD_FLAGS, str(src)).strip()))
        row("add", "KuboStore.add_file", *timed(lambda: store.add_file(src).cid))
        forget(node, rows[-1]["cid"])
        row("add", "ipfs add", *timed(lambda: node.ipfs("add", *ADD_FLAGS, str(src)).strip()))
        cid = rows[-1]["cid"]
        row("fetch", "KuboStore.download", *timed(lambda: store.download(cid, workdir / "a.bin", progress=False).cid))
        row("fetch", "ipfs cat", *timed(lambda: cli_cat(node, cid, workdir / "b.bin")))
    if len({r["cid"] for r in rows}) != 1:
        raise SystemExit(f"CIDs disagree: {[(r['tool'], r['cid']) for r in rows]}")
    return rows


def plot(rows: list[dict], size_mib: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['task']}: {r['tool']}" for r in rows]
    colors = ["tab:blue" if i % 2 == 0 else "tab:gray" for i in range(len(rows))]
    ax.barh(labels[::-1], [r["MB_per_s"] for r in rows][::-1], color=colors[::-1])
    ax.set_xlabel("MB/s (higher is better)")
    ax.set_title(f"{size_mib} MiB safetensors file, one loopback Kubo node\nblue: hddm, grey: ipfs CLI", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the generated safetensors file")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="where the JSON and PNG go")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    work.mkdir(exist_ok=True)
    try:
        rows = run(args.size_mib, work)
    finally:
        for f in work.glob("*"):
            f.unlink()
        work.rmdir()
    print(f"{'task':6} {'tool':24} {'seconds':>9} {'MB/s':>9}")
    for r in rows:
        print(f"{r['task']:6} {r['tool']:24} {r['seconds']:9.3f} {r['MB_per_s']:9.1f}")
    print(f"cid {rows[0]['cid']}")
    (args.out / "publish_fetch.json").write_text(json.dumps({"size_mib": args.size_mib, "rows": rows}, indent=2))
    plot(rows, args.size_mib, args.out / "publish_fetch.png")


if __name__ == "__main__":
    main()
