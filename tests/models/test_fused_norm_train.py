"""The fused norm pass's training kernels (``hddm_p2p.models.fused_norm_train``): the forward's row
statistics and the backward kernel against autograd through the plain PyTorch pass. The CPU tests run the
kernels in Triton's interpreter; the CUDA tests (GPU machine) run the autograd function and a compiled DiT."""

import subprocess
import sys

import pytest
import torch

from hddm_p2p.models import fused_norm, fused_norm_train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

_INTERPRETED = r"""
import os
os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported: kernels then run on the CPU
import torch
from hddm_p2p.models import fused_norm as fn, fused_norm_train as ft
torch.manual_seed(0)
eps = 1e-6
# (D, T, B, rows per program): D a power of two or not (split forward tiles, a masked backward tile); T not a
# multiple of the rows (partial runs); several programs per sample (T > 8 rows)
cases = [(48, 5, 3, 2), (72, 20, 2, 4), (64, 3, 2, 1), (96, 33, 2, 8), (384, 20, 2, 4)]
worst = 0.0
for D, T, B, rows in cases:
    for add in (True, False):
        x, y = torch.randn(B, T, D, dtype=torch.float64), torch.randn(B, T, D, dtype=torch.float64)
        signals = torch.randn(B, 6, D, dtype=torch.float64)  # unbound (B, D) views with a row stride of 6·D
        leaves = [t.clone().float().requires_grad_() for t in (x, y, signals)]
        xl, yl, sl = leaves
        gate, shift, scale = sl[:, 2], sl[:, 0], sl[:, 1]
        ref_x, ref_h = fn.reference(xl, yl if add else None, gate if add else None, shift, scale, eps)
        g_x, g_h = torch.randn_like(ref_x), torch.randn_like(ref_h)
        ((ref_x * g_x).sum() * add + (ref_h * g_h).sum()).backward()
        with torch.no_grad():
            x_out, h, mean, rstd = fn.launch(xl, yl if add else None, gate if add else None, shift, scale, eps,
                                             kernel=fn._add_norm_modulate_kernel, stats=True, ROWS=rows)
            assert (h - ref_h).abs().max() <= 1e-5 and (x_out - ref_x).abs().max() <= 1e-5
            assert (mean - ref_x.mean(-1).flatten()).abs().max() <= 1e-5
            ref_rstd = (ref_x.var(-1, unbiased=False).flatten() + eps).rsqrt()
            assert ((rstd - ref_rstd).abs() / rstd).max() <= 1e-5
            for ft.sums_kernel in (False, True):  # the per-sample sums added up by inductor's code, then ours
                grads = ft.launch_backward(g_h, g_x if add else None, x_out, yl if add else None,
                                           gate if add else None, scale, mean, rstd,
                                           kernel=ft._norm_modulate_backward_kernel, ROWS=rows)
                if not ft.sums_kernel:
                    by_inductor = grads
            assert len(grads) == len(by_inductor) == (6 if add else 3)
            for ours, theirs in zip(grads, by_inductor):
                assert (ours - theirs).abs().max() <= 1e-5 * theirs.abs().max(), (D, T, add)
        d_signals = torch.zeros_like(sl)
        if add:
            dx, dy, dshift, dscale, dgate, dsum = grads
            d_signals[:, 2] = dgate
            assert (dy - yl.grad).abs().max() <= 1e-4, (D, T, "dy")
            # the gradient of a bias inside y: the token and batch sum of y's gradient
            bias_grad = yl.grad.sum((0, 1))
            err = ((gate * dsum).sum(0) - bias_grad).abs().max() / bias_grad.abs().max()
            assert err <= 1e-5, (D, T, "bias", err.item())
        else:
            dx, dshift, dscale = grads
        d_signals[:, 0], d_signals[:, 1] = dshift, dscale
        for got, ref, name in ((dx, xl.grad, "dx"), (d_signals, sl.grad, "signals")):
            err = ((got - ref).abs().max() / ref.abs().max()).item()
            assert err <= 1e-5, (D, T, add, name, err)
            worst = max(worst, err)
# our kernel stores the signals' sums in their dtype (bf16 signals: no cast kernels after it), Σ dx' in fp32
partial = torch.randn(3, 5, 4, 72)
ft.sums_kernel = True
for dtypes in ((torch.bfloat16,) * 3 + (torch.float32,), (torch.float16, torch.float16)):
    sums = ft._sample_sums(partial, dtypes)
    assert [s.dtype for s in sums] == list(dtypes)
    for i, s in enumerate(sums):
        err = (s.float() - partial[:, :, i].sum(1)).abs().max()
        assert err <= 1e-6 * partial.abs().max() if s.dtype == torch.float32 else err <= 1e-2 * partial.abs().max()
print("ok", worst)
"""


def test_training_kernels_match_autograd_in_tritons_interpreter():
    """x', h, the row statistics and every gradient (x, y, the shift/scale/gate signals through their strided
    views, and a bias inside y from the per-sample sums of dx') against autograd on the plain pass, fp32, for widths, token counts and rows per program
    that leave partial tiles and runs."""
    pytest.importorskip("triton")
    done = subprocess.run([sys.executable, "-c", _INTERPRETED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


_INTERPRETED_DIT = r"""
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch
import triton
from hddm_p2p.models import build_dit, fused_norm as fn, fused_norm_train as ft, layers
one = [triton.Config({"ROWS": 2}, num_warps=4)]  # one config: the autotuners need no GPU to pick
fn._tuned_kernel = triton.autotune(configs=one, key=["D"])(fn._add_norm_modulate_kernel)
ft._tuned_backward = triton.autotune(configs=one, key=["D"])(ft._norm_modulate_backward_kernel)
calls = []
launch_backward = ft.launch_backward
ft.launch_backward = lambda *a, **k: calls.append(a[3] is not None) or launch_backward(*a, **k)
biases = []  # per pass: whether it computed the gradient of the bias inside its y (proj's, fc2's)
add_norm_modulate = layers.add_norm_modulate
layers.add_norm_modulate = lambda *a: biases.append(len(a) > 6 and a[6] is not None) or add_norm_modulate(*a)
torch.manual_seed(0)
x, t = torch.randn(2, 4, 8, 8), torch.rand(2) * 1000
usable = ft.usable


def grads(model, cond, on):
    ft.enabled, ft.usable = on, (lambda x: True) if on else usable  # the CPU tensors stand in for CUDA ones
    model.zero_grad()
    out = model(x, t, cond)
    out.square().mean().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


# AdaLN-Single, no conditioning: chained blocks; AdaLN-Zero with text: cross-attention blocks, norm-only passes
# on signals cut from one linear's output
text = {"tokens": torch.randn(2, 5, 12), "mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]).bool()}
worst = 0.0
for overrides, cond in (({}, None), (dict(condition="text", text_width=12, max_tokens=5, adaln="zero"), text)):
    model = build_dit("tiny", input_size=8, in_channels=4, **overrides)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    calls.clear()
    biases.clear()
    out_ref, ref = grads(model, cond, False)
    assert not calls and not any(biases)
    biases.clear()
    out, got = grads(model, cond, True)
    depth = len(model.blocks)
    if cond is None:  # every pass took the kernels, and every pass with a branch its bias's gradient
        assert calls.count(True) == 2 * depth and calls.count(False) == 1, calls
        assert biases.count(True) == 2 * depth, biases
    else:
        assert calls == [False] * (2 * depth + 1), calls
    assert ((out - out_ref).norm() / out_ref.norm()).item() < 1e-5 and len(got) == len(ref)
    ft.sums_kernel = not ft.sums_kernel  # the per-sample sums added up the other way: the same gradients
    _, summed = grads(model, cond, True)
    ft.sums_kernel = not ft.sums_kernel
    assert all(((a - b).norm() <= 1e-6 * b.norm()).item() for a, b in zip(summed, got))
    worst = max([worst] + [((a - b).norm() / b.norm()).item() for a, b in zip(got, ref) if b.norm() > 0])
    assert worst < 1e-5, (overrides, worst)
print("ok", worst)
"""


def test_dit_trains_through_the_autograd_function_in_tritons_interpreter():
    """Whole DiTs forward and backward with ``enabled`` (AdaLN-Single chained blocks; AdaLN-Zero text blocks
    with cross-attention): every norm pass (with or without a residual, the final layer's) through the
    autograd function and both kernels, proj's and fc2's bias gradients from the passes after them, gradients
    of every parameter equal to the plain model's (fp32)."""
    pytest.importorskip("triton")
    done = subprocess.run([sys.executable, "-c", _INTERPRETED_DIT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


def test_on_by_default_and_plain_off_cuda():
    """The fused pass is the default for CUDA training; CPU tensors take the plain PyTorch pass, with autograd."""
    x = torch.randn(2, 4, 8, requires_grad=True)
    shift, scale = torch.randn(2, 8), torch.randn(2, 8)
    assert fused_norm_train.enabled and not fused_norm_train.usable(x)
    _, h = fused_norm_train.add_norm_modulate(x, None, None, shift, scale, 1e-6)
    assert torch.allclose(h, fused_norm.reference(x, None, None, shift, scale, 1e-6)[1])
    h.sum().backward()
    assert x.grad is not None


def test_a_bias_gradient_is_refused_where_the_kernels_cannot_give_it():
    """Off the training kernels the pass cannot hand a detached bias its gradient: it says so instead of dropping it,
    and ``takes_bias_grad`` (what the blocks ask before detaching) is False there."""
    x, y = torch.randn(2, 4, 8, requires_grad=True), torch.randn(2, 4, 8)
    gate, shift, scale, bias = torch.randn(2, 8), torch.randn(2, 8), torch.randn(2, 8), torch.zeros(8, requires_grad=True)
    assert not fused_norm_train.takes_bias_grad(x)
    with pytest.raises(ValueError, match="takes_bias_grad"):
        fused_norm_train.add_norm_modulate(x, y, gate, shift, scale, 1e-6, bias)


def test_chunks_give_every_program_enough_rows():
    assert fused_norm_train.chunks_per_sample(128, 256, 8) == 4  # 512 programs for DiT-XL/2's b128
    assert fused_norm_train.chunks_per_sample(1024, 256, 8) == 1
    assert fused_norm_train.chunks_per_sample(1, 20, 8) == 3  # capped by T / rows


def _grads(model, x, t, fused):
    before, fused_norm_train.enabled = fused_norm_train.enabled, fused
    try:
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x, t)
        out.float().square().mean().backward()
    finally:
        fused_norm_train.enabled = before
    return out.detach().float(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@cuda
@pytest.mark.parametrize("compiled", [False, True])
def test_dit_training_step_matches_with_the_fused_norm_kernels(compiled):
    from tests.models.dit_step import perturbed_cuda_dit

    model, x, t = perturbed_cuda_dit(bf16_residual=True)
    run = torch.compile(model) if compiled else model
    torch._dynamo.reset()
    out_ref, ref = _grads(run, x, t, False)
    torch._dynamo.reset()
    out, got = _grads(run, x, t, True)
    assert ((out - out_ref).norm() / out_ref.norm()).item() < 2e-2
    assert len(got) == len(ref)
    worst = max(((a - b).float().norm() / b.float().norm()).item() for a, b in zip(got, ref) if b.norm() > 0)
    assert worst < 5e-2, worst
