"""The model the GPU tests train one step of: DiT-S/2 on CUDA, moved off DiT's zero init (a zero output and zero
gradients would compare as 0/0), with a batch of latents and timesteps."""

import torch

from hddm_p2p.models import build_dit


def perturbed_cuda_dit(bf16_residual: bool = False):
    """(model, x, t) on the GPU; ``bf16_residual``: the bf16 residual stream the training benchmarks use."""
    torch.manual_seed(0)
    model = build_dit("DiT-S/2", input_size=16, in_channels=4).cuda()
    if bf16_residual:
        model.residual_dtype = torch.bfloat16
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, torch.randn(8, 4, 16, 16, device="cuda"), torch.rand(8, device="cuda") * 1000
