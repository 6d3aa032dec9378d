"""Feature extractors: images → (B, D) float32 vectors that k-means clusters.

Every extractor has a stable ``id`` (written into centroids and expert manifests, so a stranger
can rebuild the same feature space) and a width ``dim``. ``make_extractor(spec)`` accepts:

- ``dinov2`` — DINOv2 ViT-L/14 through timm (``vit_large_patch14_dinov2.lvd142m``, 1024-d CLS
  token), weights from the Hugging Face hub: needs a machine with internet the first time.
- ``clip`` — OpenAI CLIP ViT-L/14 image embeddings (768-d) via open_clip, or transformers.
- ``pixels`` — the image downsampled to 8×8 RGB in [0, 1] (192-d); no weights, deterministic.
- ``timm:<model>`` — any timm model; ``timm:<model>:random`` initialises it randomly from a fixed
  seed instead of downloading weights (tests use a tiny ViT this way).
- a path to precomputed features (see ``hddm_p2p.cluster.extract.load_features``): handled by the
  pipeline, not here.

``extractor_from_id(id)`` maps an id found in a manifest back to an extractor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from hddm_p2p.errors import SpecError


class FeatureExtractor(ABC):
    """Maps a batch of RGB PIL images to a (B, dim) float32 array."""

    id: str
    dim: int

    @abstractmethod
    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray: ...


class PixelExtractor(FeatureExtractor):
    """Area-downsampled pixels: (B, side·side·3) in [0, 1]. Cheap, deterministic, weight-free."""

    def __init__(self, side: int = 8):
        self.side, self.id, self.dim = side, f"pixels-{side}x{side}", side * side * 3

    def __call__(self, images):
        arrs = [np.asarray(im.convert("RGB").resize((self.side, self.side), Image.BOX), dtype=np.float32)
                for im in images]
        return (np.stack(arrs).reshape(len(arrs), -1) / 255.0).astype(np.float32)  # (B, side²·3)


class TorchExtractor(FeatureExtractor):
    """A torch image encoder with its own preprocessing; runs under no_grad in eval mode."""

    def __init__(self, id: str, model: torch.nn.Module, transform: Callable, dim: int, device: str = "cpu",
                 encode: Callable | None = None):
        self.id, self.dim, self.device = id, dim, torch.device(device)
        self.model, self.transform = model.eval().to(self.device), transform
        self.encode = encode or self.model

    @torch.no_grad()
    def __call__(self, images):
        x = torch.stack([self.transform(im.convert("RGB")) for im in images]).to(self.device)  # (B, 3, H, W)
        return self.encode(x).float().cpu().numpy().reshape(len(images), -1)


def timm_extractor(model_name: str, pretrained: bool = True, id: str | None = None, device: str = "cpu",
                   seed: int = 0, **model_kwargs) -> TorchExtractor:
    """Any timm backbone as a pooled-feature extractor (``num_classes=0`` gives the pooled embedding)."""
    import timm

    torch.manual_seed(seed)  # a random-init model is then the same model on every machine
    try:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=0, **model_kwargs)
    except RuntimeError as e:
        raise SpecError(f"cannot create timm model {model_name!r}: {e}") from None
    size = model_kwargs.get("img_size")  # a resized position grid means a resized input
    overrides = {"input_size": (3, size, size), "crop_pct": 1.0} if size else {}
    config = timm.data.resolve_data_config(overrides, model=model)
    transform = timm.data.create_transform(**config)
    return TorchExtractor(id or f"timm:{model_name}" + ("" if pretrained else ":random"), model, transform,
                          model.num_features, device)


def dinov2_extractor(device: str = "cpu") -> TorchExtractor:
    """DINOv2 ViT-L/14 (LVD-142M), 1024-d CLS features at 224 px (timm resamples the position grid)."""
    return timm_extractor("vit_large_patch14_dinov2.lvd142m", pretrained=True, id="dinov2_vitl14",
                          device=device, img_size=224)


def clip_extractor(device: str = "cpu") -> TorchExtractor:
    """CLIP ViT-L/14 image embeddings (768-d) via open_clip, else transformers."""
    try:
        import open_clip

        model, _, transform = open_clip.create_model_and_transforms("ViT-L-14", pretrained="openai")
        return TorchExtractor("clip_vitl14", model, transform, 768, device, encode=model.encode_image)
    except ImportError:
        pass
    try:
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
    except ImportError:
        raise SpecError("--features clip needs open_clip or transformers: pip install open_clip_torch") from None
    name = "openai/clip-vit-large-patch14"
    model, proc = CLIPVisionModelWithProjection.from_pretrained(name), CLIPImageProcessor.from_pretrained(name)
    transform = lambda im: proc(images=im, return_tensors="pt")["pixel_values"][0]  # noqa: E731
    return TorchExtractor("clip_vitl14", model, transform, 768, device, encode=lambda x: model(pixel_values=x).image_embeds)


EXTRACTORS: dict[str, Callable[..., FeatureExtractor]] = {
    "dinov2": dinov2_extractor,
    "clip": clip_extractor,
    "pixels": lambda device="cpu": PixelExtractor(8),
}
# ids written into files → the name that rebuilds them
_ID_ALIASES = {"dinov2_vitl14": "dinov2", "clip_vitl14": "clip", "pixels-8x8": "pixels"}


def make_extractor(spec: str, device: str = "cpu") -> FeatureExtractor:
    """Build an extractor from a CLI name (``dinov2``, ``clip``, ``pixels``, ``pixels-16x16``, ``timm:<name>[:random]``)."""
    spec = _ID_ALIASES.get(spec, spec)
    if spec in EXTRACTORS:
        return EXTRACTORS[spec](device=device)
    if spec.startswith("pixels-"):
        side = spec.removeprefix("pixels-").split("x")[0]
        if side.isdigit() and spec == f"pixels-{side}x{side}":
            return PixelExtractor(int(side))
    if spec.startswith("timm:"):
        name, _, mode = spec.removeprefix("timm:").partition(":")
        return timm_extractor(name, pretrained=mode != "random", device=device, **_tiny_kwargs(name, mode))
    raise SpecError(f"unknown feature extractor {spec!r}; choose dinov2, clip, pixels, timm:<model>[:random], "
                    f"or a path to a features file")


def _tiny_kwargs(name: str, mode: str) -> dict:
    """Random-init ViTs for tests run at 32 px with 4-px patches (fast on CPU)."""
    return {"img_size": 32, "patch_size": 4} if mode == "random" and name.startswith("vit_") else {}


def extractor_from_id(id: str, device: str = "cpu") -> FeatureExtractor:
    """The extractor an id (from centroids or an expert manifest) names; SpecError if it is unknown here."""
    ex = make_extractor(id, device)
    if ex.id != id:
        raise SpecError(f"feature extractor id {id!r} rebuilt as {ex.id!r}; the ids must match exactly")
    return ex
