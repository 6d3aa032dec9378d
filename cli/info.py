"""``hddm version`` and ``hddm schedules``: what this installation supports."""

from __future__ import annotations

import json

from rich.table import Table

import hddm_p2p
from hddm_p2p.cli.options import Json
from hddm_p2p.cli.root import app, console
from hddm_p2p.diffusion import SCHEDULES, Prediction


@app.command()
def version(as_json: Json = False) -> None:
    """Print the version, and the schedules and prediction types experts may use.

    Example: hddm version --json
    """
    info = {"version": hddm_p2p.__version__, "schedules": sorted(SCHEDULES), "predictions": [p.value for p in Prediction]}
    if as_json:
        print(json.dumps(info))
        return
    table = Table(title=f"hddm-p2p {info['version']}")
    table.add_column("what")
    table.add_column("supported")
    table.add_row("schedules", ", ".join(info["schedules"]))
    table.add_row("prediction types", ", ".join(info["predictions"]))
    console.print(table)
