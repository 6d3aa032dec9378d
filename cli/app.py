"""Entry point of the ``hddm`` console script: imports every command module, then runs the root app."""

from __future__ import annotations

import importlib

from hddm_p2p.cli.root import app

# Each module registers its commands on the apps in ``root``. One line per command group.
_COMMAND_MODULES = [
    "hddm_p2p.cli.info",
    "hddm_p2p.cli.cid",
    "hddm_p2p.cli.eval",
    "hddm_p2p.cli.train_expert",
    "hddm_p2p.cli.data_encode",
    "hddm_p2p.cli.keys",
    "hddm_p2p.cli.trust",
    "hddm_p2p.cli.publish",
    "hddm_p2p.cli.inspect_cmd",
    "hddm_p2p.cli.fetch",
    "hddm_p2p.cli.catalog",
    "hddm_p2p.cli.announce",
    "hddm_p2p.cli.data_cluster",
    "hddm_p2p.cli.train_router",
    "hddm_p2p.cli.assemble",
    "hddm_p2p.cli.generate",
    "hddm_p2p.cli.demo",
    "hddm_p2p.cli.experiment",
]
for _name in _COMMAND_MODULES:
    importlib.import_module(_name)


def main() -> None:
    app(prog_name="hddm")


if __name__ == "__main__":
    main()
