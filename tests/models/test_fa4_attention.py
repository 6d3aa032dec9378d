"""FlashAttention-4's kernels behind ``flash_attention.attention``: where they are taken, their ops' shapes, and (on a
Hopper GPU with the flash-attn-4 package) their output and packed gradient against fp32 SDPA."""

import pytest
import torch
from torch._subclasses import FakeTensorMode

from hddm_p2p.models import fa4_attention, flash_attention

fa4_gpu = pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9 and fa4_attention.installed()),
    reason="needs a Hopper GPU and FlashAttention-4 (pip install flash-attn-4)")


def test_on_by_default_but_never_off_the_gpu(monkeypatch):
    """On by default, but not taken without the package (in a tested version), on the CPU, in fp32, without an
    autograd graph or at a head width the kernels cannot read in 16-byte rows: there ``attention`` stays SDPA."""
    qkv = torch.randn(2, 5, 3, 2, 16, requires_grad=True)
    assert fa4_attention.enabled is True and not fa4_attention.usable(qkv)  # CPU
    monkeypatch.setattr(fa4_attention, "installed", lambda: True)
    assert not fa4_attention.usable(qkv.detach().bfloat16().requires_grad_())  # CPU
    monkeypatch.setattr(flash_attention, "hopper", lambda device: True)
    assert fa4_attention.usable(qkv.detach().bfloat16().requires_grad_())
    monkeypatch.setattr(fa4_attention, "enabled", False)
    assert not fa4_attention.usable(qkv.detach().bfloat16().requires_grad_())
    monkeypatch.setattr(fa4_attention, "enabled", True)
    assert not fa4_attention.usable(qkv)  # fp32
    assert not fa4_attention.usable(torch.randn(2, 5, 3, 2, 12, dtype=torch.bfloat16, requires_grad=True))
    with torch.no_grad():
        assert not fa4_attention.usable(qkv.bfloat16())
    monkeypatch.setattr(flash_attention, "hopper", lambda device: False)
    out = flash_attention.attention(qkv)  # SDPA
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    want = torch.softmax(q @ k.transpose(-1, -2) / 4, -1) @ v
    assert torch.allclose(out, want.transpose(1, 2), atol=1e-5)


def test_ops_give_the_packed_layouts_to_compile():
    """What ``torch.compile`` sees of the ops (no kernel runs): o as (B, T, H, d), an fp32 log-sum-exp per head and
    query, and one packed (B, T, 3, H, d) gradient for the projection."""
    with FakeTensorMode():
        qkv = torch.empty(2, 256, 3, 16, 72, dtype=torch.bfloat16, requires_grad=True)
        out, lse = torch.ops.hddm.fa4_forward(qkv, 72 ** -0.5, True)
        assert out.shape == (2, 256, 16, 72) and out.dtype == torch.bfloat16
        assert lse.shape == (2, 16, 256) and lse.dtype == torch.float32
        out.sum().backward()
        assert qkv.grad.shape == qkv.shape and qkv.grad.dtype == torch.bfloat16


@fa4_gpu
@pytest.mark.parametrize("d,forward", [(72, "cudnn"), (64, "cudnn"), (64, "fa4")])
def test_kernels_match_sdpa_on_the_gpu(d, forward, monkeypatch):
    """bf16, through ``flash_attention.attention`` eager and compiled, against fp32 SDPA at a DiT's token count."""
    torch.manual_seed(0)
    monkeypatch.setattr(flash_attention, "enabled", False)
    monkeypatch.setattr(fa4_attention, "enabled", True)
    monkeypatch.setattr(fa4_attention, "forward_backend", forward)
    qkv = torch.randn(4, 256, 3, 16, d, device="cuda")
    leaf = qkv.clone().requires_grad_()
    ref = flash_attention.reference(leaf)
    g = torch.randn_like(ref)
    ref.backward(g)
    for fn in (flash_attention.attention, torch.compile(flash_attention.attention)):
        x = qkv.bfloat16().requires_grad_()
        assert fa4_attention.usable(x)
        out = fn(x)
        out.backward(g.bfloat16())
        assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2
        assert ((x.grad.float() - leaf.grad).norm() / leaf.grad.norm()).item() < 2e-2
    torch._dynamo.reset()


@fa4_gpu
def test_compiled_dit_training_step_matches_with_the_kernels(monkeypatch):
    """One compiled DiT-S/2 step with attention through the kernels gives SDPA's gradients."""
    from tests.models.dit_step import perturbed_cuda_dit

    monkeypatch.setattr(flash_attention, "enabled", False)
    model, x, t = perturbed_cuda_dit(bf16_residual=True)
    run = torch.compile(model)
    grads = []
    for on in (False, True):
        monkeypatch.setattr(fa4_attention, "enabled", on)
        torch._dynamo.reset()
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = run(x, t)
        out.float().square().mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch._dynamo.reset()
    assert ((grads[1] - grads[0]).norm() / grads[0].norm()).item() < 2e-2


def test_only_the_tested_version_counts_as_installed(monkeypatch):
    """A flash-attn-4 whose Hopper backward was not checked here (the fix below depends on its internals) is left
    alone: SDPA runs."""
    import importlib.metadata
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    for version, want in (("4.0.0b36", True), ("4.0.0b37", False)):
        monkeypatch.setattr(fa4_attention, "_installed", None)
        monkeypatch.setattr(importlib.metadata, "version", lambda name, v=version: v)
        assert fa4_attention.installed() is want


def test_backward_kernel_tiles_heads_by_32_columns_where_its_accumulator_does():
    """The fix of FlashAttention-4's Hopper backward (72-wide heads tiled as 80 against a dQ accumulator laid out
    in 96): the subclass rounds to 32 unless dK and dV are swapped, and is applied once."""
    class Kernel:  # the attributes the real kernel's constructor sets, with its rounding to 16
        def __init__(self, dtype, head_dim, head_dim_v=None, qhead_per_kvhead=1, dKV_swapAB=False):
            self.dKV_swapAB = dKV_swapAB
            self.tile_hdim = self.tile_hdimv = -(-head_dim // 16) * 16
            self.check_hdim_oob = self.check_hdim_v_oob = head_dim != self.tile_hdim

    fixed = fa4_attention._dq_tiles_of_32(Kernel)
    assert fixed.__name__ == "Kernel" and fa4_attention._dq_tiles_of_32(fixed) is fixed
    k = fixed("bf16", 72, None, 1)
    assert (k.tile_hdim, k.tile_hdimv, k.check_hdim_oob, k.check_hdim_v_oob) == (96, 96, True, True)
    assert fixed("bf16", 64).tile_hdim == 64 and not fixed("bf16", 64).check_hdim_oob
    assert fixed("bf16", 72, dKV_swapAB=True).tile_hdim == 80  # left to the kernel
