"""Intra-prompt diversity: the mean pairwise LPIPS distance between N samples of one prompt or class.

    div(group) = 2 / (N (N−1)) · Σ_{i<j} LPIPS(x_i, x_j)          (over all N(N−1)/2 unordered pairs)
    reported   = mean and standard deviation of div over the groups (each prompt weighs the same)

LPIPS (Zhang et al. 2018) is the ``lpips`` package: its learned linear layers ship inside the wheel, its
backbone (AlexNet by default) comes from torchvision's download. Here the backbone is read from a local
torchvision state dict (``backbone_weights``); without one the call fails, unless the caller explicitly
asks for a random backbone (tests only), and then the model id says ``random-backbone``.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import torch

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.eval.fid import WeightsUnavailable, sha256_file

LPIPS_NETS = ("alex", "vgg", "squeeze")


@dataclass(eq=False)
class LpipsModel:
    """An ``lpips.LPIPS`` network and the id that names its backbone weights."""

    net: torch.nn.Module
    id: str  # "lpips-alex@<sha256[:12] of backbone>" or "lpips-alex@random-backbone"

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def pairs(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS(a_k, b_k) for uint8 images a, b (P, 3, H, W) → (P,) float."""
        to = lambda x: x.to(self.device).float() / 127.5 - 1.0  # LPIPS expects [-1, 1]
        with torch.inference_mode():
            return self.net(to(a), to(b)).flatten().float().cpu()


def _copy_backbone(lp: torch.nn.Module, state: Mapping[str, torch.Tensor], net: str) -> None:
    """Load a torchvision classifier state dict (``features.<i>.*``) into lpips' slices of the same modules."""
    copied = 0
    for slice_name, sl in lp.net.named_children():
        for idx, module in sl.named_children():
            for pname, param in module.named_parameters(recurse=False):
                key = f"features.{idx}.{pname}"
                if key not in state or state[key].shape != param.shape:
                    raise ShapeError(f"backbone weights lack {key} with shape {tuple(param.shape)}; pass torchvision's "
                                     f"{net} ImageNet weights (e.g. alexnet-owt-7be5be79.pth)")
                param.data.copy_(state[key])
                copied += 1
    if copied == 0:
        raise ShapeError(f"no backbone parameters found for lpips net {net!r}")


def load_lpips(net: str = "alex", backbone_weights: Path | None = None, *, allow_random_backbone: bool = False,
               device: str | torch.device = "cpu") -> LpipsModel:
    """LPIPS with its shipped linear layers and a local backbone; see the module docstring."""
    import lpips

    if net not in LPIPS_NETS:
        raise DataError(f"unknown LPIPS backbone {net!r}; choose one of {', '.join(LPIPS_NETS)}")
    if backbone_weights is None and not allow_random_backbone:
        raise WeightsUnavailable(f"LPIPS needs the torchvision {net} ImageNet weights; pass --lpips-backbone PATH "
                                 "(e.g. alexnet-owt-7be5be79.pth from torchvision)")
    with warnings.catch_warnings():  # lpips 0.1.4 calls torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        lp = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)  # linear layers from the wheel
    if backbone_weights is None:
        return LpipsModel(lp.eval().to(device), f"lpips-{net}@random-backbone")
    if not Path(backbone_weights).is_file():
        raise DataError(f"LPIPS backbone weights {str(backbone_weights)!r} do not exist")
    try:
        state = torch.load(backbone_weights, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors come in many types
        raise DataError(f"{str(backbone_weights)!r} is not a torch state dict ({type(e).__name__})") from None
    _copy_backbone(lp, state, net)
    return LpipsModel(lp.eval().to(device), f"lpips-{net}@{sha256_file(Path(backbone_weights))[:12]}")


def group_diversity(model: LpipsModel, images: torch.Tensor, batch: int = 64) -> float:
    """Mean LPIPS over all unordered pairs of one group, uint8 (N, 3, H, W), N ≥ 2."""
    n = images.shape[0]
    if n < 2:
        raise DataError(f"a group has {n} image(s); pairwise diversity needs at least 2 per group")
    pairs = list(itertools.combinations(range(n), 2))
    dists = []
    for k in range(0, len(pairs), batch):
        i, j = zip(*pairs[k:k + batch])
        dists.append(model.pairs(images[list(i)], images[list(j)]))
    return float(torch.cat(dists).double().mean())


def lpips_diversity(groups: Iterable[torch.Tensor] | Mapping[object, torch.Tensor], model: LpipsModel | None = None,
                    **load_kwargs) -> tuple[float, float]:
    """(mean, std) over groups of the per-group mean pairwise LPIPS; each group uint8 (N_g, 3, H, W)."""
    model = model or load_lpips(**load_kwargs)
    values = per_group_diversity(groups, model)
    return float(np.mean(values)), float(np.std(values))


def per_group_diversity(groups: Iterable[torch.Tensor] | Mapping[object, torch.Tensor], model: LpipsModel) -> list[float]:
    """The mean pairwise LPIPS of each group, in order."""
    seq = list(groups.values()) if isinstance(groups, Mapping) else list(groups)
    if not seq:
        raise DataError("no groups of images given; diversity needs at least one group of ≥ 2 images")
    return [group_diversity(model, g) for g in seq]
