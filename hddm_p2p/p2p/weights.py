"""The gate every weights file passes before it is accepted: a well-formed safetensors header, never pickle.

``check_weights`` runs at publish (before any byte is uploaded) and at fetch (before the artifact is kept);
the checks themselves live in ``hddm_p2p.p2p.safetensors_check``.
"""

from __future__ import annotations

from pathlib import Path

from hddm_p2p.p2p.safetensors_check import check_safetensors

SAFETENSORS_MEDIA_TYPE = "application/x-safetensors"


def check_weights(path: Path) -> None:
    """IntegrityError unless ``path`` is a safetensors file with a sane header (no pickle, no overlaps)."""
    check_safetensors(Path(path))
