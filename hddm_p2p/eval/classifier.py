"""The project's CIFAR-10 classifier: a small ResNet whose penultimate layer is a feature space for FD.

For machines without the Inception weights, a Fréchet distance in the features of a classifier the
project trains itself, with a recipe kept here (``RECIPES``), is the next best thing; its test accuracy
travels with every number it produces so a reader can judge the features. A trained classifier is a
directory::

    model.safetensors   weights; metadata {"hddm.format": "hddm-classifier/1", "hddm.arch": <json of arch>}
    classifier.json     {"kind": "classifier", "id": "cifar10-resnet@<sha256[:12]>", "recipe": {...},
                         "test_accuracy": 0.91, "n_test": 10000, "training": {...}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from hddm_p2p.errors import DataError, SpecError
from hddm_p2p.eval.fid import sha256_file

FORMAT = "hddm-classifier/1"
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # per-channel statistics of the CIFAR-10 training set
CIFAR_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that decides the classifier: architecture, data, augmentation, optimiser, seed."""

    width: int = 64  # channels of the first stage; stages use width, 2·width, 4·width; features are 4·width
    blocks: tuple[int, ...] = (2, 2, 2)  # residual blocks per stage
    stem_stride: int = 1  # 2 halves the resolution before the stages: ~4× cheaper, for CPU recipes
    epochs: float = 30.0  # passes over the training images (fractional allowed)
    max_steps: int | None = None  # stop earlier than `epochs` (quick recipes)
    batch_size: int = 512
    lr: float = 0.2  # peak SGD lr (Nesterov, momentum 0.9), linear warm-up then cosine to 0
    warmup_frac: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    crop_pad: int = 4  # augmentation: random crop of the image reflect-padded by 4 px, and horizontal flip
    seed: int = 0
    train_limit: int | None = None  # first N training images (None: all 50,000)
    test_limit: int | None = None  # first N test images for the reported accuracy (None: all 10,000)

    def arch(self) -> dict[str, Any]:
        return {"width": self.width, "blocks": list(self.blocks), "stem_stride": self.stem_stride, "num_classes": 10}


# Presets: the full recipe (≈30 epochs, meant for a GPU) and a quick one (CPU, the test suite).
RECIPES: dict[str, ClassifierRecipe] = {
    "cifar10-resnet": ClassifierRecipe(),
    "cifar10-resnet-quick": ClassifierRecipe(width=16, blocks=(1, 1, 1), stem_stride=2, batch_size=64, lr=0.05, max_steps=200,
                                             warmup_frac=0.1, label_smoothing=0.0, train_limit=6400,
                                             test_limit=1000),
}


def get_recipe(name: str) -> ClassifierRecipe:
    if name not in RECIPES:
        raise SpecError(f"unknown classifier recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with an identity (or 1×1 strided) shortcut (He et al. 2016)."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.short = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.short(x))


class CifarResNet(nn.Module):
    """32×32 ResNet: stem, three stages (32², 16², 8² at stem_stride 1), global average pool → features (B, 4·width)."""

    def __init__(self, width: int = 64, blocks: tuple[int, ...] | list[int] = (2, 2, 2), stem_stride: int = 1,
                 num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, c = [], width
        for i, n in enumerate(blocks):
            c_out = width * 2**i
            for j in range(n):
                layers.append(BasicBlock(c, c_out, 2 if (i > 0 and j == 0) else 1))
                c = c_out
        self.stages = nn.Sequential(*layers)
        self.feature_dim = c
        self.head = nn.Linear(c, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(x))  # (B, 4w, 8/stem_stride, 8/stem_stride)
        return h.mean((2, 3))  # (B, 4w): the penultimate layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, 10)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) → float, standardised with the CIFAR-10 statistics, resized to 32×32 if needed."""
    x = images.float() / 255.0
    if x.shape[-2:] != (32, 32):
        x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(CIFAR_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def save_classifier(out: Path, net: CifarResNet, recipe: ClassifierRecipe, test_accuracy: float, n_test: int,
                    training: dict[str, Any]) -> dict[str, Any]:
    """Write the classifier directory (weights first, description last, each atomically); returns the description."""
    from hddm_p2p.p2p._files import atomic_write, write_json

    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
    atomic_write(out / "model.safetensors", save(state, metadata={"hddm.format": FORMAT,
                                                                  "hddm.arch": json.dumps(recipe.arch())}))
    desc = {"kind": "classifier", "format": FORMAT, "id": f"cifar10-resnet@{sha256_file(out / 'model.safetensors')[:12]}",
            "feature_dim": net.feature_dim, "recipe": {**asdict(recipe), "blocks": list(recipe.blocks)},
            "test_accuracy": round(float(test_accuracy), 4), "n_test": n_test, "training": training}
    write_json(out / "classifier.json", desc)
    return desc


@dataclass(eq=False)
class ClassifierExtractor:
    """uint8 images (B, 3, H, W) → penultimate features (B, 4·width) of a trained :class:`CifarResNet`."""

    net: CifarResNet
    id: str
    dim: int
    info: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu") -> "ClassifierExtractor":
        """Load a classifier directory (or its ``model.safetensors``); DataError naming what is missing."""
        root = Path(path).parent if Path(path).is_file() else Path(path)
        weights, desc_path = root / "model.safetensors", root / "classifier.json"
        if not weights.is_file() or not desc_path.is_file():
            raise DataError(f"{str(root)!r} is not a classifier directory (needs model.safetensors and "
                            "classifier.json); train one with `hddm eval classifier train`")
        desc = json.loads(desc_path.read_text())
        try:
            state = load_file(weights)
            r = desc["recipe"]
            net = CifarResNet(r["width"], tuple(r["blocks"]), r.get("stem_stride", 1))
            net.load_state_dict(state)
        except (SafetensorError, RuntimeError, KeyError) as e:
            raise DataError(f"cannot load classifier {str(root)!r} ({type(e).__name__}); retrain it") from None
        info = {"test_accuracy": desc["test_accuracy"], "n_test": desc["n_test"]}
        return cls(net.eval().to(device), f"cifar10-resnet@{sha256_file(weights)[:12]}", net.feature_dim, info)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.net.features(normalize(images.to(self.device))).float()  # (B, D)
