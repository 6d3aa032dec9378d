"""Publish/fetch throughput: hddm's KuboStore and local CIDs beside the ``ipfs`` CLI on the same node.

    python benchmarks/publish_fetch.py                     # 1 GiB safetensors file in /tmp, 3 rounds
    python benchmarks/publish_fetch.py --size-mib 64 --repeat 1 --out bench-out

On one loopback-only ``KuboNode`` (a fresh temp repo), with a generated safetensors file of ``--size-mib``:

- CID: ``hddm_p2p.p2p.cid.hash_file`` (pure Python + hashlib, also yields sha256) vs ``ipfs add --only-hash``;
- add: ``KuboStore.add_file`` (streams over HTTP, hashes locally in the same read) vs ``ipfs add``;
- fetch: ``KuboStore.download`` (``cat`` into ``.part``, CID verified before rename) vs ``ipfs cat > file``.

Before each add the content is unpinned and garbage-collected, so both sides write every block. The machine
may be shared: ``--repeat`` rounds run hddm and the CLI interleaved (who goes first alternates), and the
table gives each tool's median MB/s with min and max, and hddm ÷ CLI as a ratio of medians.
Prints the table, and writes ``publish_fetch.json`` and ``publish_fetch.png`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import tempfile
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
    if cid in node.client.pin_ls():
        node.ipfs("pin", "rm", cid)
    node.ipfs("repo", "gc", "--quiet")


def cli_cat(node: KuboNode, cid: str, dest: Path) -> str:
    with open(dest, "wb") as out:
        subprocess.run([str(node.binary), "cat", cid], env=node._env(), stdout=out, check=True)
    return cid


PAIRS = [("cid", "hddm hash_file", "ipfs add --only-hash"), ("add", "KuboStore.add_file", "ipfs add"),
         ("fetch", "KuboStore.download", "ipfs cat")]


def one_round(node: KuboNode, store: KuboStore, src: Path, workdir: Path, ours_first: bool) -> list[tuple[str, float, str]]:
    """Each task once by hddm and once by the ipfs CLI (order alternating between rounds): (tool, seconds, cid)."""
    out: list[tuple[str, float, str]] = []

    def pair(ours: Callable[[], str], theirs: Callable[[], str], before: Callable[[], None] = lambda: None) -> None:
        jobs = [(PAIRS[len(out) // 2][1], ours), (PAIRS[len(out) // 2][2], theirs)]
        for tool, fn in jobs if ours_first else jobs[::-1]:
            before()
            out.append((tool, *timed(fn)))

    cid = hash_file(src).cid
    pair(lambda: hash_file(src).cid, lambda: node.ipfs("add", "--only-hash", *ADD_FLAGS, str(src)).strip())
    pair(lambda: store.add_file(src).cid, lambda: node.ipfs("add", *ADD_FLAGS, str(src)).strip(),
         before=lambda: forget(node, cid))  # every add writes every block
    for name in ("a.bin", "b.bin"):
        (workdir / name).unlink(missing_ok=True)
    pair(lambda: store.download(cid, workdir / "a.bin", progress=False).cid,
         lambda: cli_cat(node, cid, workdir / "b.bin"))
    return out


def run(src: Path, workdir: Path, repeat: int) -> list[dict]:
    size, rows = src.stat().st_size, []
    with KuboNode(name="bench") as node:
        store = KuboStore(node.api, timeout=600)
        for r in range(repeat):
            for tool, seconds, cid in one_round(node, store, src, workdir, ours_first=r % 2 == 0):
                task = next(t for t, *tools in PAIRS if tool in tools)
                rows.append({"round": r, "task": task, "tool": tool, "seconds": seconds,
                             "MB_per_s": size / 1e6 / seconds, "cid": cid})
    if len({r["cid"] for r in rows}) != 1:
        raise SystemExit(f"CIDs disagree: {[(r['tool'], r['cid']) for r in rows]}")
    return rows


def summarize(rows: list[dict]) -> list[dict]:
    """Per tool: median MB/s and its spread over rounds; per task: hddm ÷ CLI (ratio of medians, and per round)."""
    out = []
    for task, ours, theirs in PAIRS:
        speeds = {t: [r["MB_per_s"] for r in rows if r["tool"] == t] for t in (ours, theirs)}
        per_round = [a / b for a, b in zip(speeds[ours], speeds[theirs])]
        for tool in (ours, theirs):
            out.append({"task": task, "tool": tool, "median_MB_per_s": statistics.median(speeds[tool]),
                        "min_MB_per_s": min(speeds[tool]), "max_MB_per_s": max(speeds[tool]),
                        "ratio_vs_cli": statistics.median(speeds[ours]) / statistics.median(speeds[theirs])
                        if tool == ours else 1.0,
                        "round_ratios": [round(x, 3) for x in per_round] if tool == ours else []})
    return out


def plot(summary: list[dict], size_mib: float, repeat: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    rows = summary[::-1]
    med = [r["median_MB_per_s"] for r in rows]
    err = [[m - r["min_MB_per_s"] for m, r in zip(med, rows)], [r["max_MB_per_s"] - m for m, r in zip(med, rows)]]
    colors = ["tab:gray" if r["tool"].startswith("ipfs") else "tab:blue" for r in rows]
    ax.barh([f"{r['task']}: {r['tool']}" for r in rows], med, xerr=err, color=colors, capsize=3)
    ax.set_xlabel(f"MB/s, median of {repeat} interleaved rounds (bars: min–max)")
    ax.set_title(f"{size_mib:.0f} MiB safetensors file, one loopback Kubo node\nblue: hddm, grey: ipfs CLI",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the generated safetensors file")
    parser.add_argument("--file", type=Path, help="benchmark this existing file instead of generating one")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (report medians and spreads)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"), help="where the JSON and PNG go")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temp dir in /tmp)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hddm-bench-", dir=args.workdir) as tmp:
        work = Path(tmp)
        src = args.file or write_safetensors(work / "model.safetensors", args.size_mib)
        rows = run(src, work, args.repeat)
        size_mib = src.stat().st_size / MiB
    summary = summarize(rows)
    print(f"{size_mib:.0f} MiB, {args.repeat} interleaved rounds; MB/s per round in order")
    print(f"{'task':6} {'tool':22} {'median':>8} {'min':>8} {'max':>8} {'hddm/cli':>9}  rounds")
    for r in summary:
        rounds = [f"{x['MB_per_s']:.0f}" for x in rows if x["tool"] == r["tool"]]
        ratio = f"{r['ratio_vs_cli']:.2f}×" if r["round_ratios"] else ""
        print(f"{r['task']:6} {r['tool']:22} {r['median_MB_per_s']:8.1f} {r['min_MB_per_s']:8.1f} "
              f"{r['max_MB_per_s']:8.1f} {ratio:>9}  {' '.join(rounds)}")
    print(f"cid {rows[0]['cid']}")
    result = {"size_bytes": int(size_mib * MiB), "repeat": args.repeat, "summary": summary, "rows": rows}
    (args.out / "publish_fetch.json").write_text(json.dumps(result, indent=2))
    plot(summary, size_mib, args.repeat, args.out / "publish_fetch.png")


if __name__ == "__main__":
    main()
