"""``python -m hddm_p2p.experiments run CONFIG [--out DIR] [--work DIR] [--device cuda] [--quiet]``.

The experiment alone, for machines that lack the dependencies of the other ``hddm`` commands (the
full CLI imports every command module). The console log is also written to ``OUT/run.log`` as it goes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hddm_p2p.errors import HddmError


class _Tee:
    """A text stream writing to stderr and to a log file, line-buffered (the log survives a kill)."""

    def __init__(self, path: Path):
        self.log = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, s: str) -> int:
        sys.stderr.write(s)
        self.log.write(s)
        return len(s)

    def flush(self) -> None:
        sys.stderr.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hddm_p2p.experiments", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment config")
    run.add_argument("config", type=Path)
    run.add_argument("--out", type=Path, help="results directory (default runs/<name>)")
    run.add_argument("--work", type=Path, help="classifier, experts and routers (default: --out)")
    run.add_argument("--device", default="auto")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    from rich.console import Console

    from hddm_p2p.experiments import load_config, run_experiment

    try:
        cfg = load_config(args.config)
        out = args.out or Path("runs") / cfg.name
        out.mkdir(parents=True, exist_ok=True)
        console = Console(file=_Tee(out / "run.log"), width=150, log_path=False)
        res = run_experiment(cfg, out, args.device, console=console, progress=not args.quiet, work=args.work)
    except HddmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    done = sum(r["status"] == "ok" for r in res["ensembles"])
    print(f"{done}/{len(res['ensembles'])} configurations evaluated in {res['wall_s']:.0f} s → {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
