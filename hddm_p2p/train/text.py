"""Text encoders for text-conditioned experts: captions → {"tokens": (B, L, E), "mask": (B, L)}.

``HFTextEncoder`` loads a real encoder with ``transformers`` (e.g. ``openai/clip-vit-large-patch14``,
``google/t5-v1_1-xxl``; frozen, last hidden state). ``ByteTextEncoder`` is a tiny deterministic encoder
(UTF-8 bytes through a fixed seeded embedding table plus sinusoidal positions) for tests and offline use.
The encoder's ``description`` ({id, width, max_tokens}) goes into the expert's ``conditioning``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from hddm_p2p.errors import SpecError


class ByteTextEncoder:
    """Deterministic byte-level "encoder": id ``bytes-<width>``; no weights to download."""

    def __init__(self, width: int = 32, max_tokens: int = 32, seed: int = 0):
        self.width, self.max_tokens = width, max_tokens
        self.table = torch.randn(256, width, generator=torch.Generator().manual_seed(seed))  # (256, E)
        pos = torch.arange(max_tokens)[:, None] / 10000 ** (torch.arange(0, width, 2) / width)  # (L, E/2)
        self.pos = torch.cat([pos.sin(), pos.cos()], 1)[:, :width]

    @property
    def description(self) -> dict:
        return {"id": f"bytes-{self.width}", "width": self.width, "max_tokens": self.max_tokens}

    def __call__(self, captions: list[str]) -> dict:
        B, L = len(captions), self.max_tokens
        ids = torch.zeros(B, L, dtype=torch.long)
        mask = torch.zeros(B, L, dtype=torch.bool)
        for i, c in enumerate(captions):
            b = list(c.encode("utf-8")[:L])
            ids[i, :len(b)], mask[i, :len(b)] = torch.tensor(b, dtype=torch.long), True
        return {"tokens": (self.table[ids] + self.pos) / math.sqrt(2), "mask": mask}


class HFTextEncoder:
    """A frozen ``transformers`` encoder (CLIP text or T5 encoder) and its tokenizer."""

    def __init__(self, model_id: str, max_tokens: int = 77, device: str = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        self.model_id, self.max_tokens, self.device = model_id, max_tokens, device
        self.tokenizer = AutoTokenizer.from_pretrained(model_id)
        model = AutoModel.from_pretrained(model_id)
        self.model = (getattr(model, "text_model", None) or getattr(model, "encoder", None) or model).to(device).eval()
        self.width = int(getattr(model.config, "hidden_size", None) or model.config.text_config.hidden_size)

    @property
    def description(self) -> dict:
        return {"id": self.model_id, "width": self.width, "max_tokens": self.max_tokens}

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> dict:
        tok = self.tokenizer(captions, padding="max_length", truncation=True, max_length=self.max_tokens,
                             return_tensors="pt").to(self.device)
        hidden = self.model(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
        return {"tokens": hidden.float(), "mask": tok.attention_mask.bool()}


@lru_cache(maxsize=4)
def get_text_encoder(name: str, max_tokens: int = 77, device: str = "cpu"):
    """``bytes-<width>`` → ``ByteTextEncoder``; anything else is a Hugging Face model id."""
    if name.startswith("bytes-"):
        try:
            return ByteTextEncoder(int(name.split("-", 1)[1]), max_tokens)
        except ValueError:
            raise SpecError(f"bad byte encoder {name!r}; use bytes-<width>, e.g. bytes-32") from None
    return HFTextEncoder(name, max_tokens, device)
