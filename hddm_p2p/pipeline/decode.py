"""From samples in an ensemble's data space to uint8 images: pixels by their value range, latents by the VAE.

The VAE is the one every expert's manifest declares (``data_space.vae.id``, a Hugging Face id or a local
diffusers directory, loaded with ``diffusers.AutoencoderKL``); latents are divided by its scaling factor
and decoded to [−1, 1] images.
"""

from __future__ import annotations

import torch

from hddm_p2p.p2p.manifests.expert import DataSpace
from hddm_p2p.pipeline.images import to_uint8


class Decoder:
    """``decoder(x) -> uint8 (B, 3|C, H, W)`` for samples ``x`` of one data space; the VAE loads on first use."""

    def __init__(self, space: DataSpace, device: str = "cpu"):
        self.space, self.device, self._vae = space, device, None

    def _load(self):
        if self._vae is None:
            from hddm_p2p.train.vae import get_vae

            self._vae = get_vae(self.space.vae.id, self.device)
        return self._vae

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.space.kind == "pixel":
            return to_uint8(x, tuple(self.space.value_range))
        from hddm_p2p.train.vae import decode

        return to_uint8(decode(self._load(), x.float()).float(), (-1.0, 1.0))
