"""Latent space through diffusers' ``AutoencoderKL`` (Stable Diffusion's VAE, 8× down-sampling).

``get_vae("stabilityai/sd-vae-ft-mse")`` loads real weights with ``from_pretrained`` (a hub id or a local
directory); ``get_vae("tiny-random")`` builds a small randomly initialised VAE from a config, for tests and
offline runs (no download). Latents are ``scaling_factor · mean(q(z|x))`` (the posterior mean, so encoding is
deterministic); the id, scaling factor and image resolution go into the expert's ``data_space.vae``.
"""

from __future__ import annotations

import torch

from hddm_p2p.errors import DataError

TINY = "tiny-random"


def tiny_vae(seed: int = 0):
    """A ~0.1M-parameter AutoencoderKL with SD's layout (4 latent channels, 8× down-sampling)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    blocks = 4  # 3 down-samplings: 8×
    return AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=8,
                         block_out_channels=(8,) * blocks, down_block_types=("DownEncoderBlock2D",) * blocks,
                         up_block_types=("UpDecoderBlock2D",) * blocks, scaling_factor=0.18215).eval()


def get_vae(name: str, device: str = "cpu", dtype: torch.dtype = torch.float32):
    """``AutoencoderKL`` by hub id / local path, or ``tiny-random``; frozen, in eval mode."""
    if name == TINY:
        vae = tiny_vae()
    else:
        from diffusers import AutoencoderKL

        try:
            vae = AutoencoderKL.from_pretrained(name, torch_dtype=dtype)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot load VAE {name!r}: {str(e).splitlines()[0]}; pass a hub id or a local "
                            "diffusers directory (e.g. stabilityai/sd-vae-ft-mse)") from None
    return vae.to(device, dtype).eval().requires_grad_(False)


def vae_description(name: str, vae, image_resolution: int) -> dict:
    return {"id": name, "scaling_factor": float(vae.config.scaling_factor), "image_resolution": image_resolution}


@torch.no_grad()
def encode(vae, images: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1] (B, 3, H, W) → scaled latents (B, 4, H/8, W/8)."""
    x = images.to(vae.device, vae.dtype)
    return vae.encode(x).latent_dist.mean * vae.config.scaling_factor


@torch.no_grad()
def decode(vae, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents → images in [−1, 1] (clamped)."""
    z = latents.to(vae.device, vae.dtype) / vae.config.scaling_factor
    return vae.decode(z).sample.clamp(-1, 1)
