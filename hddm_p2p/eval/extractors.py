"""Feature extractors for Fréchet distances: one protocol, one registry of names.

An extractor maps uint8 images ``(B, 3, H, W)`` to float features ``(B, D)``. Its ``id`` names the
network *and* its weights (``inception-v3-tf@<sha256[:12]>``, ``cifar10-resnet@<sha256[:12]>``), so
statistics computed with one extractor are never compared with another's. ``info`` carries what a
reader needs to judge the numbers, e.g. ``{"test_accuracy": 0.91}`` for the project's classifier.

Names accepted by :func:`get_extractor`::

    inception              torch-fidelity's TF-ported InceptionV3 (pool3, 2048-d): the standard FID network
    inception:PATH         the same network with its weights from PATH
    classifier:PATH        the project's CIFAR-10 classifier (a directory from ``hddm eval classifier train``)
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch

from hddm_p2p.errors import SpecError

EXTRACTOR_NAMES = ("inception", "inception:PATH", "classifier:PATH")


@runtime_checkable
class FeatureExtractor(Protocol):
    """``extractor(images uint8 (B,3,H,W)) -> features float32 (B, dim)``, identified by ``id``.

    An optional ``info`` dict (e.g. ``{"test_accuracy": 0.91}``) is copied into statistics and records.
    """

    id: str
    dim: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def metric_name(extractor_id: str) -> str:
    """``FID`` for the standard Inception network, ``FD`` (Fréchet distance) for any other features."""
    return "FID" if extractor_id.startswith("inception-v3-tf@") else "FD"


def get_extractor(name: str, *, device: str | torch.device = "cpu", inception_weights: Path | None = None,
                  allow_download: bool = True) -> FeatureExtractor:
    """Build the extractor ``name`` (see the module docstring); SpecError for an unknown name."""
    kind, _, arg = name.partition(":")
    if kind == "inception":
        from hddm_p2p.eval.fid import InceptionExtractor

        weights = Path(arg) if arg else inception_weights
        return InceptionExtractor.load(weights, device=device, allow_download=allow_download)
    if kind == "classifier" and arg:
        from hddm_p2p.eval.classifier import ClassifierExtractor

        return ClassifierExtractor.load(Path(arg), device=device)
    raise SpecError(f"unknown feature extractor {name!r}; use one of: {', '.join(EXTRACTOR_NAMES)}")
