"""``python -m hddm_p2p.cli`` (and ``torchrun … -m hddm_p2p.cli``) runs the ``hddm`` command."""

from hddm_p2p.cli.app import main

main()
