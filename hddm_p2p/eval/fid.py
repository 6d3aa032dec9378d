"""FID: the Fréchet distance in the pool3 features (2048-d) of the standard TF-ported InceptionV3.

The network is torch-fidelity's ``FeatureExtractorInceptionV3``, chosen over torchmetrics, pytorch-fid
and clean-fid because it is already a dependency, reproduces the TensorFlow reference implementation
bit for bit (TF-1.x bilinear resize to 299×299 included), takes uint8 ``(B, 3, H, W)`` images as they
are and accepts a local weights file. Weights come from, in order: an explicit path; torch hub's cache
(where the library's own download puts them); the library's download, unless ``allow_download`` is
false or ``HDDM_OFFLINE=1``. Without any of these the error says what to pass instead.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3, FeatureExtractorInceptionV3

from hddm_p2p.errors import DataError, HddmError

FEATURE_LAYER = "2048"  # pool3, the layer every published FID uses


class WeightsUnavailable(HddmError):
    """Pretrained weights for an evaluation network are not on this machine and cannot be downloaded."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def offline() -> bool:
    """True when ``HDDM_OFFLINE`` is set to a true value: never try to download weights."""
    return os.environ.get("HDDM_OFFLINE", "").lower() in ("1", "true", "yes")


def cached_inception_weights() -> Path:
    """Where torch hub (and so torch-fidelity's own download) keeps the Inception weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / URL_INCEPTION_V3.rsplit("/", 1)[-1]


def _unavailable(why: str) -> WeightsUnavailable:
    return WeightsUnavailable(f"Inception weights are not available ({why}); pass --inception-weights PATH "
                              "(torch-fidelity's weights-inception-2015-12-05-6726825d.pth) or use "
                              "--extractor classifier:PATH")


def resolve_inception_weights(path: Path | None, allow_download: bool = True) -> Path:
    """The local weights file to use, downloading it into torch hub's cache if allowed (see module docstring)."""
    if path is not None:
        if not Path(path).is_file():
            raise DataError(f"Inception weights file {str(path)!r} does not exist")
        return Path(path)
    cached = cached_inception_weights()
    if cached.is_file():
        return cached
    if not allow_download or offline():
        raise _unavailable(f"not in {cached.parent} and downloads are off")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(URL_INCEPTION_V3, str(cached), progress=True)
    except Exception as e:  # urllib raises URLError, HTTPError, socket errors, SSL errors...
        raise _unavailable(f"download failed: {type(e).__name__}") from None
    return cached


@dataclass(eq=False)
class InceptionExtractor:
    """uint8 images (B, 3, H, W), any H×W → pool3 features (B, 2048) float32."""

    net: FeatureExtractorInceptionV3
    id: str
    dim: int = 2048
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, weights: Path | None = None, *, device: str | torch.device = "cpu",
             allow_download: bool = True) -> "InceptionExtractor":
        """Build the network from ``weights`` (or the cache / a download); id = ``inception-v3-tf@<sha256[:12]>``."""
        path = resolve_inception_weights(weights, allow_download)
        try:  # weights_only first: a file that is not plain tensors is refused before the library unpickles it
            torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            net = FeatureExtractorInceptionV3("inception-v3-compat", [FEATURE_LAYER],
                                              feature_extractor_weights_path=str(path))
        except Exception as e:  # torch raises RuntimeError/UnpicklingError/KeyError for wrong files
            raise DataError(f"{str(path)!r} is not an InceptionV3 state dict for torch-fidelity ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:200]})") from None
        return cls(net.to(device), f"inception-v3-tf@{sha256_file(path)[:12]}",
                   info={"weights": path.name, "layer": "pool3"})

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            (feats,) = self.net(images.to(self.device))
        return feats.float()  # (B, 2048)
