"""Self-attention on the packed qkv projection (``hddm_p2p.models.flash_attention``): both Triton kernels against
SDPA's autograd. The CPU tests run the kernels in Triton's interpreter; the CUDA tests (GPU machine) run them
compiled, alone and inside a DiT training step."""

import subprocess
import sys

import pytest
import torch

from hddm_p2p.models import flash_attention

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

_INTERPRETED = r"""
import os
os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported: kernels then run on the CPU
import torch
from hddm_p2p.models import flash_attention as fa
torch.manual_seed(0)
worst = 0.0
# (B, T, H, d, block, step): heads of a power of two (64), with a rest (72 = 64 + 16, 24, 96 = 64 + 32); token
# counts that leave partial blocks (20, 33, 40); blocks larger and smaller than the inner step
cases = [(2, 20, 2, 72, 16, 16), (1, 33, 3, 64, 32, 16), (2, 16, 1, 24, 16, 16), (1, 40, 2, 96, 16, 32)]
for B, T, H, d, block, step in cases:
    leaf = torch.randn(B, T, 3, H, d).requires_grad_()
    ref = fa.reference(leaf)
    g = torch.randn_like(ref)
    ref.backward(g)
    with torch.no_grad():
        o, lse = fa.launch_forward(leaf, d ** -0.5, kernel=fa._flash_forward_kernel, BLOCK_M=block, BLOCK_N=step)
        # both backward kernels; the per-head one also with o as a strided view (cuDNN's forward hands one over)
        o_view = o.transpose(1, 2).contiguous().transpose(1, 2)
        # the blocks kernel also with a larger block than the grain of its token sums (rows it must zero)
        grads = [fa.launch_backward(g, leaf, o, lse, d ** -0.5, kernel=fa._flash_backward_kernel, per_head=False,
                                    BLOCK=block, STEP=step),
                 fa.launch_backward(g, leaf, o_view, lse, d ** -0.5, kernel=fa._flash_backward_head_kernel,
                                    per_head=True, BLOCK=block, STEP=step)]
        grads.append(fa.launch_backward(g, leaf, o, lse, d ** -0.5, kernel=fa._flash_backward_kernel, per_head=False,
                                        grain=block, BLOCK=2 * block, STEP=step))
        plain = fa.launch_backward(g, leaf, o, lse, d ** -0.5, kernel=fa._flash_backward_kernel, per_head=False,
                                   sums=False, BLOCK=block, STEP=step)  # no bias: no sums, the same gradient
        assert plain[1].numel() == 0 and torch.equal(plain[0], grads[0][0])
    q, k, v = leaf.detach().permute(2, 0, 3, 1, 4).double()
    ref_lse = torch.logsumexp(q @ k.transpose(-1, -2) * d ** -0.5, -1) / torch.log(torch.tensor(2.0))
    assert (lse - ref_lse).abs().max() < 1e-4, (B, T, H, d, "lse")
    bias_grad = leaf.grad.sum((0, 1))  # (3, H, d): what the qkv projection's bias gets
    for (dqkv, token_sums), name in zip(grads, ("blocks", "head", "blocks, block 2x grain")):
        assert token_sums.shape[1:] == (B, 3, H, d), (name, token_sums.shape)
        err = ((token_sums.sum((0, 1)) - bias_grad).abs().max() / bias_grad.abs().max()).item()
        assert err < 1e-5, (B, T, H, d, name, "token sums", err)
    for got, want, name in ((o, ref, "o"), (grads[0][0], leaf.grad, "dqkv blocks"), (grads[1][0], leaf.grad, "dqkv head"),
                            (grads[2][0], leaf.grad, "dqkv blocks, block 2x grain")):
        assert got.shape == want.shape, (name, got.shape)
        err = ((got - want).abs().max() / want.abs().max()).item()
        assert err < 1e-5, (B, T, H, d, name, err)
        worst = max(worst, err)
print("ok", worst)
"""


def test_kernels_match_sdpa_in_tritons_interpreter():
    """o, the base-2 log-sum-exp, the packed gradient (dq, dk, dv in place) and its token sums (the qkv bias's
    gradient) against SDPA's autograd, fp32; the blocks kernel also with blocks larger than its sums' grain."""
    pytest.importorskip("triton")
    done = subprocess.run([sys.executable, "-c", _INTERPRETED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


_INTERPRETED_DIT = r"""
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch
import triton
from hddm_p2p.models import build_dit, flash_attention as fa
one = lambda **blocks: triton.autotune([triton.Config(blocks)], key=["T"])  # one config: no GPU needed to pick
fa._tuned_forward = one(BLOCK_M=16, BLOCK_N=16)(fa._flash_forward_kernel)
fa._tuned_backward = one(BLOCK=16, STEP=16)(fa._flash_backward_kernel)
fa._tuned_head = one(BLOCK=16, STEP=16)(fa._flash_backward_head_kernel)
fa.forward_backend = "triton"  # cuDNN's forward needs a GPU
calls = []
launch = fa.launch_backward
fa.launch_backward = lambda *a, **k: calls.append(a[1].shape) or launch(*a, **k)
runs = fa.runs
biases = []  # per attention call: whether the kernels computed the qkv bias's gradient
attention = fa.attention
fa.attention = lambda qkv, scale=None, bias=None: biases.append(bias is not None) or attention(qkv, scale, bias)
torch.manual_seed(0)
model = build_dit("tiny", input_size=8, in_channels=4)
with torch.no_grad():  # off DiT's zero init, so every gradient is nonzero
    for p in model.parameters():
        p.add_(0.05 * torch.randn_like(p))
x, t = torch.randn(2, 4, 8, 8), torch.rand(2) * 1000


def grads(on):
    fa.runs = (lambda *a: True) if on else runs  # the CPU fp32 tensors stand in for CUDA bf16 ones
    model.zero_grad()
    out = model(x, t, None)
    out.square().mean().backward()
    return out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


out_ref, ref = grads(False)
assert not calls
worst = 0.0
for backward in ("head", "blocks"):
    fa.backward = backward
    calls.clear()
    biases.clear()
    out, got = grads(True)
    assert len(calls) == len(model.blocks) and biases == [True] * len(model.blocks), (calls, biases)
    assert ((out - out_ref).norm() / out_ref.norm()).item() < 1e-5 and len(got) == len(ref)
    worst = max([worst] + [((a - b).norm() / b.norm()).item() for a, b in zip(got, ref) if b.norm() > 0])
    assert worst < 1e-5, (backward, worst)
print("ok", worst)
"""


def test_dit_trains_through_the_kernels_in_tritons_interpreter():
    """A whole DiT forward and backward with every block's attention through the autograd function (both custom
    ops, both kernels, the qkv bias's gradient from their token sums): the output and every parameter's gradient
    equal the SDPA model's (fp32)."""
    pytest.importorskip("triton")
    done = subprocess.run([sys.executable, "-c", _INTERPRETED_DIT], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


_WRITES = r"""
import torch
import triton
import triton.runtime
from triton.backends.compiler import GPUTarget
from torch._higher_order_ops import triton_kernel_wrap as wrap
from hddm_p2p.models import flash_attention as fa


class Hopper:  # Triton's IR for an sm_90 target, without a GPU
    def get_current_target(self):
        return GPUTarget("cuda", 90, 128)


triton.runtime.driver.set_active(Hopper())
analyse = getattr(wrap, "identify_accessed_tensors", None) or wrap.identify_mutated_tensors
B, T, H, d = 2, 64, 4, 72
qkv = torch.randn(B, T, 3, H, d, dtype=torch.bfloat16)
o, lse = torch.randn(B, T, H, d, dtype=torch.bfloat16), torch.randn(B, H, T)
args = dict(QKV=qkv, O=o, DO=torch.randn_like(o), LSE=lse, DQKV=torch.empty_like(qkv), SCRATCH=torch.empty(B * H, T, 80),
            SUMS=torch.empty(4, B, 3, H, d), T=T, H=H, d=d, stride_b=qkv.stride(0), stride_t=qkv.stride(1), stride_w=H * d,
            stride_ob=o.stride(0), stride_ot=o.stride(1), stride_oh=o.stride(2), stride_gb=o.stride(0),
            stride_gt=o.stride(1), stride_sums=B * 3 * H * d, GRAIN=16, **fa.kernel_constants(d, d ** -0.5))
for kernel, wanted in ((fa._tuned_head, {"DQKV", "SCRATCH", "SUMS"}), (fa._tuned_backward, {"DQKV", "SUMS"})):
    found = analyse(kernel, args, {})
    written = {dep.name for dep in found.read_writes.writes} if hasattr(found, "read_writes") else set(found)
    assert written == wanted, (kernel.fn.__name__, sorted(written))
print("ok")
"""


def test_compile_sees_that_the_backward_writes_only_its_outputs():
    """torch.compile's analysis of a user Triton kernel (which tensors it writes) finds only dqkv, the scratch and
    the token sums written by the backward kernels: were q, k, v, o or dO taken for written, compiled training would
    copy each of them before every backward, and a leaf qkv would be refused."""
    pytest.importorskip("triton")
    done = subprocess.run([sys.executable, "-c", _WRITES], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


def test_split_width_covers_the_head_in_tiles_a_tensor_core_takes():
    assert flash_attention.split_width(72) == (64, 16)  # DiT-XL/2: 80 columns of work, not 128
    assert flash_attention.split_width(64) == (64, 0)
    assert flash_attention.split_width(96) == (64, 32)
    assert flash_attention.split_width(40) == (32, 16)
    for d in range(16, 257):
        a, b = flash_attention.split_width(d)
        assert a + b >= d and (b == 0 or b >= 16) and a & (a - 1) == 0 and b & (b - 1) == 0


def test_auto_takes_power_of_two_head_widths_on_hopper(monkeypatch):
    """``enabled = "auto"``: on a Hopper GPU the kernels take d = 64 (DiT-B/2, measured faster than SDPA) but not
    d = 72 (DiT-XL/2, measured slower); True takes both; nothing off CUDA or without an autograd graph."""
    pytest.importorskip("triton")
    monkeypatch.setattr(flash_attention, "hopper", lambda device: True)
    cuda_device, bf16 = torch.device("cuda"), torch.bfloat16
    assert flash_attention.runs(cuda_device, bf16, 64, True) and not flash_attention.runs(cuda_device, bf16, 72, True)
    assert not flash_attention.runs(cuda_device, bf16, 64, False)
    assert not flash_attention.runs(torch.device("cpu"), bf16, 64, True)
    monkeypatch.setattr(flash_attention, "enabled", True)
    assert flash_attention.runs(cuda_device, bf16, 72, True)


def test_on_for_training_on_hopper_and_plain_off_cuda():
    """On by default where measured (Hopper); where the kernels cannot run (CPU, fp32, no autograd graph)
    ``attention`` is SDPA, with autograd."""
    qkv = torch.randn(2, 5, 3, 2, 16, requires_grad=True)
    assert flash_attention.enabled == "auto" and not flash_attention.usable(qkv)
    assert not flash_attention.hopper(torch.device("cpu"))
    assert not flash_attention.cudnn_forward_on(torch.device("cpu"))
    # by default: the per-head backward for power-of-two head widths, the per-block one for 72 = 64 + 16 (and
    # off Hopper, cuDNN's forward nowhere)
    assert flash_attention.arrangement(64, torch.device("cpu")) == (False, True)
    assert flash_attention.arrangement(72, torch.device("cpu")) == (False, False)
    out = flash_attention.attention(qkv)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    want = torch.softmax(q @ k.transpose(-1, -2) / 4, -1) @ v
    assert out.shape == (2, 5, 2, 16) and torch.allclose(out, want.transpose(1, 2), atol=1e-5)
    out.sum().backward()
    assert qkv.grad is not None
    with pytest.raises(ValueError, match="takes_bias_grad"):  # no kernels, no token sums for a detached bias
        flash_attention.attention(qkv, bias=torch.zeros(3 * 2 * 16, requires_grad=True))
    assert not flash_attention.takes_bias_grad(torch.randn(2, 5, 32), torch.nn.Linear(32, 96), 16)


@cuda
@pytest.mark.parametrize("d", [72, 64])
def test_kernels_match_sdpa_on_the_gpu(d):
    """bf16 kernels (autotuned, through the custom ops; cuDNN's forward with the per-head backward, the Triton
    forward with the per-block one) against fp32 SDPA at a DiT's token count, forward and backward (and the token
    sums a bias inside qkv gets as its gradient); also compiled."""
    torch.manual_seed(0)
    qkv = torch.randn(4, 256, 3, 16, d, device="cuda")
    leaf = qkv.clone().requires_grad_()
    ref = flash_attention.reference(leaf)
    g = torch.randn_like(ref)
    ref.backward(g)
    before = flash_attention.forward_backend, flash_attention.backward, flash_attention.enabled
    try:
        flash_attention.enabled = True  # "auto" leaves d = 72 to SDPA
        for forward, backward in (("cudnn", "head"), ("triton", "blocks")):
            flash_attention.forward_backend, flash_attention.backward = forward, backward
            for fn in (flash_attention.attention, torch.compile(flash_attention.attention)):
                x = qkv.bfloat16().requires_grad_()
                bias = torch.zeros(3 * 16 * d, device="cuda", requires_grad=True)  # the bias inside x: its gradient
                assert flash_attention.usable(x)
                out = fn(x, bias=bias)
                out.backward(g.bfloat16())
                assert ((out.float() - ref).norm() / ref.norm()).item() < 1e-2
                assert ((x.grad.float() - leaf.grad).norm() / leaf.grad.norm()).item() < 2e-2
                want = leaf.grad.sum((0, 1)).flatten()
                assert bias.grad.dtype == torch.float32 and ((bias.grad - want).norm() / want.norm()).item() < 2e-2
            torch._dynamo.reset()
    finally:
        flash_attention.forward_backend, flash_attention.backward, flash_attention.enabled = before


@cuda
def test_dit_training_step_matches_with_the_kernels():
    from tests.models.dit_step import perturbed_cuda_dit

    model, x, t = perturbed_cuda_dit(bf16_residual=True)
    run = torch.compile(model)
    results = []
    for on in (False, True):
        before, flash_attention.enabled = flash_attention.enabled, on
        try:
            torch._dynamo.reset()
            model.zero_grad()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = run(x, t)
            out.float().square().mean().backward()
        finally:
            flash_attention.enabled = before
        results.append((out.detach().float(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (out_ref, ref), (out, got) = results
    assert ((out - out_ref).norm() / out_ref.norm()).item() < 2e-2 and len(got) == len(ref)
    worst = max(((a - b).float().norm() / b.float().norm()).item() for a, b in zip(got, ref) if b.norm() > 0)
    assert worst < 5e-2, worst
