"""Where the real data lives: ``$HDDM_SHARED_DATA``, else ``shared/data`` beside the checkout (as CI lays it),
else the session machine's ``/work/shared/data``."""

import os
from pathlib import Path


def _shared_data() -> Path:
    if os.environ.get("HDDM_SHARED_DATA"):
        return Path(os.environ["HDDM_SHARED_DATA"])
    beside = Path(__file__).resolve().parents[2] / "shared" / "data"
    return beside if beside.exists() else Path("/work/shared/data")


SHARED_DATA = _shared_data()
CIFAR10 = SHARED_DATA / "cifar10"
