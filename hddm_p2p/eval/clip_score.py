"""CLIP score: how well an image matches its prompt, from a CLIP model on local disk.

    CLIPScore(x, c) = 100 · max(cos(E_img(x), E_txt(c)), 0)      (Hessel et al. 2021; torchmetrics' scaling)

The model is a ``transformers`` CLIPModel + CLIPProcessor directory (``save_pretrained`` output, e.g. a
download of openai/clip-vit-base-patch32). Nothing is fetched: a missing or incomplete directory is a
one-line error saying what to pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from hddm_p2p.errors import DataError, ShapeError
from hddm_p2p.eval.fid import WeightsUnavailable


def _model_id(root: Path) -> str:
    """``clip@<sha256[:12]>`` of the weight files (+ config), so two copies of one model get one id."""
    h = hashlib.sha256()
    for f in sorted(root.glob("*.safetensors")) + sorted(root.glob("*.bin")) + [root / "config.json"]:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return f"clip@{h.hexdigest()[:12]}"


@dataclass(eq=False)
class ClipScorer:
    """``scorer(images uint8 (B,3,H,W), texts [B]) -> (B,)`` CLIP scores in [0, 100]."""

    model: torch.nn.Module
    processor: object
    id: str

    @classmethod
    def load(cls, path: Path | None, device: str | torch.device = "cpu") -> "ClipScorer":
        """Load a local CLIP directory; WeightsUnavailable if there is none, DataError if it is not a CLIP model."""
        if path is None or not (Path(path) / "config.json").is_file():
            where = f" ({path} has no config.json)" if path is not None else ""
            raise WeightsUnavailable(f"CLIP score needs a local CLIP model{where}; pass --clip PATH to a transformers "
                                     "CLIPModel directory (save_pretrained of e.g. openai/clip-vit-base-patch32)")
        from transformers import CLIPModel, CLIPProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        try:
            model = CLIPModel.from_pretrained(path, local_files_only=True)
            processor = CLIPProcessor.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise DataError(f"{str(path)!r} is not a loadable CLIP model+processor ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160]})") from None
        return cls(model.eval().to(device), processor, _model_id(Path(path)))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def __call__(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """CLIP scores (B,) = 100 · max(cos, 0)."""
        return 100.0 * self.cosine(images, texts).clamp(min=0)

    def cosine(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity (B,) between each image embedding and its prompt's text embedding."""
        if images.ndim != 4 or images.shape[0] != len(texts):
            raise ShapeError(f"{tuple(images.shape)} images for {len(texts)} prompts; give one prompt per image")
        inputs = self.processor(text=list(texts), images=list(images.cpu()), return_tensors="pt", padding=True,
                                truncation=True)
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        return torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds, dim=-1).float().cpu()


def clip_score(scorer: ClipScorer, batches: Iterable[tuple[torch.Tensor, Sequence[str]]]) -> tuple[float, float, int]:
    """(mean, std, n) of the CLIP score over (uint8 images (B,3,H,W), prompts) batches."""
    scores = [scorer(images, texts) for images, texts in batches]
    if not scores:
        raise DataError("no images to score; CLIP score needs at least one (image, prompt) pair")
    s = torch.cat(scores).double().numpy()
    return float(np.mean(s)), float(np.std(s)), int(s.size)
