"""The qkv bias's gradient from the algebra of attention (``qkv_bias``): k's third exactly 0, v's third from proj's
bias gradient, q's third summed; against autograd's in fp64 for one attention block, and through a whole DiT whose
norm passes run their Triton kernels in the interpreter (the path the blocks take on a GPU)."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from hddm_p2p.models import qkv_bias


def _attention_block(x, w_qkv, b_qkv, w_proj, b_proj, heads, algebra):
    """proj(SDPA(qkv(x))) as ``Attention`` computes it; with ``algebra`` the biases take their gradients as
    ``Attention.forward_routed`` routes them (proj's added detached, its gradient handed to what ``route`` returns,
    as the norm pass after it does)."""
    B, T, D = x.shape
    qkv = F.linear(x, w_qkv, b_qkv.detach() if algebra else b_qkv).reshape(B, T, 3, heads, D // heads)
    if algebra:
        qkv, b_proj = qkv_bias.route(qkv, b_qkv, b_proj, w_proj)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    mixed = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D)
    return F.linear(mixed, w_proj) + b_proj


def test_the_algebra_gives_autograds_gradients_in_fp64():
    torch.manual_seed(0)
    D, heads = 24, 3
    params = [torch.randn(3 * D, D, dtype=torch.float64) / D ** 0.5, torch.randn(3 * D, dtype=torch.float64),
              torch.randn(D, D, dtype=torch.float64) / D ** 0.5, torch.randn(D, dtype=torch.float64)]
    x = torch.randn(2, 7, D, dtype=torch.float64)
    upstream = torch.randn(2, 7, D, dtype=torch.float64)
    grads = []
    for algebra in (False, True):
        leaves = [p.clone().requires_grad_() for p in [x] + params]
        out = _attention_block(*leaves, heads=heads, algebra=algebra)
        (out * upstream).sum().backward()
        grads.append([p.grad for p in leaves])
    for ref, got in zip(*grads):
        assert torch.allclose(got, ref, rtol=1e-9, atol=1e-11)
    b_ref, b_got = grads[0][2], grads[1][2]
    assert torch.equal(b_got[D:2 * D], torch.zeros(D, dtype=torch.float64))  # k's third: exactly 0
    assert b_ref[D:2 * D].abs().max() < 1e-12 < b_ref[2 * D:].abs().max()  # autograd's: 0 to rounding


def test_applies_only_when_enabled_with_a_bias_to_train(monkeypatch):
    layer, x = torch.nn.Linear(8, 24), torch.randn(2, 3, 8)
    assert qkv_bias.enabled  # on by default
    monkeypatch.setattr(qkv_bias, "enabled", False)
    assert not qkv_bias.applies(layer, x, 2)
    monkeypatch.setattr(qkv_bias, "enabled", True)
    assert qkv_bias.applies(layer, x, 2)
    with torch.no_grad():
        assert not qkv_bias.applies(layer, x, 2)
    layer.bias.requires_grad_(False)
    assert not qkv_bias.applies(layer, x, 2)


_INTERPRETED_DIT = r"""
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch
import triton
from hddm_p2p.models import build_dit, fused_norm as fn, fused_norm_train as ft, qkv_bias
config = [triton.Config({"ROWS": 2}, num_warps=4)]  # the autotuners need no GPU to pick from one config
fn._tuned_kernel = triton.autotune(configs=config, key=["D"])(fn._add_norm_modulate_kernel)
ft._tuned_backward = triton.autotune(configs=config, key=["D"])(ft._norm_modulate_backward_kernel)
ft.enabled, ft.usable = True, lambda x: True  # the CPU tensors stand in for CUDA ones
routed = []
route = qkv_bias.route
qkv_bias.route = lambda *a: routed.append(1) or route(*a)
torch.manual_seed(0)
x, t = torch.randn(2, 4, 8, 8), torch.rand(2) * 1000
model = build_dit("tiny", input_size=8, in_channels=4)
with torch.no_grad():
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
grads = []
for on in (False, True):
    qkv_bias.enabled = on
    model.zero_grad()
    model(x, t).square().mean().backward()
    grads.append([p.grad.clone() for p in model.parameters()])
assert len(routed) == len(model.blocks), routed
worst = max(((a - b).norm() / b.norm()).item() for a, b in zip(grads[1], grads[0]) if b.norm() > 0)
assert worst < 1e-5, worst
D = model.blocks[0].attn.proj.in_features
assert not grads[1][[n for n, _ in model.named_parameters()].index("blocks.0.attn.qkv.bias")][D:2 * D].any()
print("ok", worst)
"""


def test_dit_trains_through_the_algebra_with_the_norm_kernels_interpreted():
    """A whole DiT (AdaLN-Single, chained blocks) with the norm passes' kernels in Triton's interpreter: every block
    routes its biases' gradients through ``qkv_bias.route``, and every gradient equals the one without it."""
    pytest.importorskip("triton")
    done = subprocess.run([sys.executable, "-c", _INTERPRETED_DIT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_dit_training_step_matches_with_the_algebra(monkeypatch):
    """On a GPU, in a compiled step under bf16 autocast with the norm kernels (whose passes compute proj's bias
    gradient): the same gradients with the algebra as without, k's third of every qkv bias exactly 0."""
    from tests.models.dit_step import perturbed_cuda_dit

    from hddm_p2p.models import flash_attention

    monkeypatch.setattr(flash_attention, "enabled", False)  # SDPA: DiT-S/2's heads would take the Triton kernels
    model, x, t = perturbed_cuda_dit(bf16_residual=True)
    grads = {}
    for on in (False, True):
        monkeypatch.setattr(qkv_bias, "enabled", on)
        torch._dynamo.reset()
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = torch.compile(model)(x, t)
        out.float().square().mean().backward()
        grads[on] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys()
    worst = max(((grads[True][n] - g).float().norm() / g.float().norm()).item()
                for n, g in grads[False].items() if g.norm() > 0)
    assert worst < 5e-2, worst
    D = model.blocks[0].attn.proj.in_features
    assert all(not grads[True][f"blocks.{i}.attn.qkv.bias"][D:2 * D].any() for i in range(len(model.blocks)))
