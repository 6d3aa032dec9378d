"""The ``hddm`` command line: a thin Typer layer over ``hddm_p2p`` (installed as ``hddm_p2p.cli``)."""
