"""The speed paths of the DiT compute what the plain paths compute: bf16 residual stream, fused GELU, regional
compilation. The CUDA tests skip on machines without a GPU and run on the GPU machine
(``pytest tests/models/test_fast_paths.py`` there)."""

import pytest
import torch

from hddm_p2p.models import build_dit
from hddm_p2p.models.compile import compile_blocks
from hddm_p2p.models.layers import Mlp

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _perturbed(name="tiny", **kw):
    torch.manual_seed(0)
    model = build_dit(name, input_size=16, in_channels=4, **kw)
    with torch.no_grad():  # zero-initialised output layers would make every comparison trivially equal
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _stream_dtypes(model, x, t):
    seen = []
    hooks = [b.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for b in model.blocks]
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            out = model(x, t)
    finally:
        for h in hooks:
            h.remove()
    return out, seen


def test_residual_stream_is_fp32_under_autocast_unless_asked_for_bf16():
    model = _perturbed()
    x, t = torch.randn(3, 4, 16, 16), torch.rand(3) * 1000
    ref, dtypes = _stream_dtypes(model, x, t)
    assert set(dtypes) == {torch.float32}  # DiT's default: the residual stream stays fp32 under autocast
    model.residual_dtype = torch.bfloat16
    out, dtypes = _stream_dtypes(model, x, t)
    assert set(dtypes) == {torch.bfloat16}
    rel = (out.float() - ref.float()).norm() / ref.float().norm()
    assert 0 < rel < 3e-2  # bf16 rounding of the stream, nothing else


def test_bf16_residual_trains(tmp_path):
    """A few steps with the bf16 stream reduce the loss as the fp32 stream does (no NaN, same direction)."""
    from hddm_p2p.train.objectives import ObjectiveConfig, diffusion_loss

    losses = {}
    for stream in (None, torch.bfloat16):
        model = _perturbed()
        model.residual_dtype = stream
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        gen = torch.Generator().manual_seed(0)
        x0 = torch.randn(16, 4, 16, 16, generator=gen)
        trace = []
        for _ in range(8):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = diffusion_loss(model, x0, None, ObjectiveConfig("fm"), gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
            trace.append(loss.item())
        losses[stream] = trace
    for trace in losses.values():
        assert all(torch.isfinite(torch.tensor(trace))) and trace[-1] < trace[0]
    assert abs(losses[None][-1] - losses[torch.bfloat16][-1]) < 0.1 * losses[None][0]


def test_compile_blocks_keeps_the_function():
    model = _perturbed().eval()
    x, t = torch.randn(2, 4, 16, 16), torch.rand(2) * 1000
    with torch.no_grad():
        ref = model(x, t)
        compile_blocks(model, backend="eager")  # dynamo tracing without inductor: fast, same graph breaks
        assert torch.allclose(model(x, t), ref, atol=1e-6)
        assert torch.allclose(model(x[:1], t[:1]), ref[:1], atol=1e-6)  # another batch size
    with pytest.raises(TypeError, match="no .blocks"):
        compile_blocks(torch.nn.Linear(2, 2))


@cuda
def test_fused_gelu_matches_the_plain_mlp_in_bf16():
    torch.manual_seed(0)
    mlp = Mlp(256, 1024).cuda().to(torch.bfloat16)
    x = torch.randn(4, 64, 256, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        plain = mlp.fc2(mlp.act(mlp.fc1(x)))
        fused = mlp(x)
    rel = ((fused.float() - plain.float()).norm() / plain.float().norm()).item()
    assert rel < 1e-2, rel  # bf16 operands; the epilogue applies the same tanh GELU


@cuda
def test_fused_gelu_paths_by_autograd_and_dtype(monkeypatch):
    from hddm_p2p.models import fused_mlp

    calls = []
    for name in ("sampling", "training"):
        real = getattr(fused_mlp, name)
        monkeypatch.setattr(fused_mlp, name, lambda *a, _n=name, _r=real: calls.append(_n) or _r(*a))
    mlp = Mlp(64, 256).cuda()
    x = torch.randn(2, 8, 64, device="cuda")
    mlp(x).sum().backward()  # fp32 training without autocast: plain path
    assert calls == [] and mlp.fc1.weight.grad is not None
    with torch.autocast("cuda", dtype=torch.bfloat16):
        mlp(x).sum().backward()  # bf16 training: the GELU_AUX / DGELU epilogues
    assert calls == ["training"]
    with torch.no_grad():
        mlp(x)  # fp32 sampling: fused (cuBLASLt's fp32 GELU epilogue through torch._addmm_activation)
        mlp.to(torch.bfloat16)(x.bfloat16())
    assert calls == ["training", "sampling", "sampling"]
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        mlp(x.bfloat16())  # sampling under autocast: plain
    assert calls == ["training", "sampling", "sampling"]


@cuda
@pytest.mark.parametrize("backend", ["cudnn", "flash"])
def test_dit_forward_is_the_same_across_attention_backends_and_compilation(backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = _perturbed("DiT-S/2", condition="class", num_classes=10).cuda().to(torch.bfloat16).eval()
    x = torch.randn(8, 4, 16, 16, device="cuda", dtype=torch.bfloat16)
    t, y = torch.rand(8, device="cuda") * 1000, torch.randint(0, 10, (8,), device="cuda")
    with torch.no_grad():
        Mlp.fused_gelu = False
        ref = model(x, t, y).float()
        Mlp.fused_gelu = True
        chosen = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[backend]
        with sdpa_kernel(chosen):
            out = compile_blocks(model)(x, t, y).float()
    rel = ((out - ref).norm() / ref.norm()).item()
    assert rel < 2e-2, rel


_INTERPRETED = r"""
import os, sys
os.environ["TRITON_INTERPRET"] = "1"  # before Triton is imported: kernels then run on the CPU
import torch
from hddm_p2p.models import fused_norm as fn
torch.manual_seed(0)
worst = 0.0
cases = [(48, 5, 3, torch.float32, 2), (72, 4, 2, torch.float32, 4), (88, 3, 2, torch.float32, 2),
         (64, 3, 3, torch.float32, 4), (96, 3, 2, torch.bfloat16, 1), (384, 5, 2, torch.float32, 4)]
for D, T, B, dtype, rows in cases:  # two column tiles: 32+16, 64+8, 64+(24 of 32), 64 alone, 64+32, 256+128
    offset = 20 if dtype == torch.float32 else 0  # fp32 rows with a mean well off 0 (bf16 would lose x there)
    x, y = (torch.randn(B, T, D) + offset).to(dtype), torch.randn(B, T, D).to(dtype)
    signals = torch.randn(B, 6, D).to(dtype)  # (B, 6, D) unbound: signals with a row stride of 6·D
    shift, scale, gate = signals[:, 0], signals[:, 1], signals[:, 2]
    for add in (True, False):
        ref_x, ref_h = fn.reference(x, y if add else None, gate if add else None, shift, scale, 1e-6)
        out_x, out_h = fn.launch(x, y if add else None, gate if add else None, shift, scale, 1e-6,
                                 kernel=fn._add_norm_modulate_kernel, ROWS=rows)
        for out, ref in ((out_x, ref_x), (out_h, ref_h)):
            assert out.dtype == ref.dtype and out.shape == ref.shape
            if dtype == torch.float32:
                err = ((out - ref).abs().max() / ref.abs().max().clamp(min=1)).item()  # x' is ≈ 20
                assert err <= 1e-5, (D, add, err)
                worst = max(worst, err)
            else:  # bf16: the kernel rounds x + gate*y once where eager rounds the product and the sum
                rel = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                assert rel < 1e-2, (D, add, rel)
print("ok", worst)
"""


def test_fused_norm_kernel_matches_the_plain_path_in_tritons_interpreter():
    """The Triton kernel's arithmetic, on the CPU: D not a power of two (second column tile exact, padded, or
    absent), several rows per program (a partial last program), strided signals, rows whose mean is far from 0,
    with and without the residual add; fp32 to 1e-5 and bf16 to its rounding."""
    import subprocess
    import sys

    pytest.importorskip("triton")
    done = subprocess.run([sys.executable, "-c", _INTERPRETED], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-2000:]


def test_fused_norm_falls_back_to_plain_pytorch_off_cuda_or_with_autograd():
    from hddm_p2p.models import fused_norm as fn

    x, sig = torch.randn(2, 3, 8), torch.randn(2, 6, 8)
    assert not fn.usable(x, sig)  # CPU tensors
    out = fn.add_norm_modulate(x, x, sig[:, 2], sig[:, 0], sig[:, 1], 1e-6)
    ref = fn.reference(x, x, sig[:, 2], sig[:, 0], sig[:, 1], 1e-6)
    assert all(torch.equal(a, b) for a, b in zip(out, ref))


def test_deferred_residual_chain_computes_the_plain_forward(monkeypatch):
    """Blocks chained through forward_deferred (each MLP residual added by the next block's first norm, the
    last by the final layer) give the plain forward's output; on the CPU the passes run in PyTorch."""
    from hddm_p2p.models.dit import DiT
    from hddm_p2p.models.layers import DiTBlock

    model = _perturbed("tiny", condition="class", num_classes=10)
    x, t, y = torch.randn(3, 4, 16, 16), torch.rand(3) * 1000, torch.tensor([1, 5, 9])
    with torch.no_grad():
        ref = model(x, t, y)
        monkeypatch.setattr(DiT, "deferred_residuals", lambda self, h, t0: True)
        monkeypatch.setattr(DiTBlock, "forward", lambda *a, **k: pytest.fail("the plain block path ran"))
        out = model(x, t, y)
    assert torch.allclose(out, ref, atol=1e-5) and not torch.equal(ref, torch.zeros_like(ref))


@cuda
def test_fused_norm_model_matches_the_plain_model_eager_and_compiled():
    from hddm_p2p.models import fused_norm as fn

    model = _perturbed("DiT-S/2", condition="class", num_classes=10).cuda().to(torch.bfloat16).eval()
    x = torch.randn(8, 4, 16, 16, device="cuda", dtype=torch.bfloat16)
    t, y = torch.rand(8, device="cuda") * 1000, torch.randint(0, 10, (8,), device="cuda")
    try:
        with torch.inference_mode():
            fn.enabled = False
            ref = model(x, t, y).float()
            fn.enabled = True
            eager = model(x, t, y).float()
            whole = torch.compile(model)(x, t, y).float()
            regional = compile_blocks(model)(x, t, y).float()
    finally:
        fn.enabled = True
        torch._dynamo.reset()
    for out in (eager, whole, regional):
        rel = ((out - ref).norm() / ref.norm()).item()
        assert rel < 2e-2, rel


@cuda
def test_fused_norm_kernel_with_and_without_autograd(monkeypatch):
    """Sampling takes the norm kernel without row statistics; training takes it with them (for the Triton
    backward) where ``fused_norm_train.enabled``, else the plain pass; gradients flow either way."""
    from hddm_p2p.models import fused_norm as fn, fused_norm_train

    calls = []
    real = fn.launch
    monkeypatch.setattr(fn, "launch", lambda *a, **k: calls.append(k.get("stats", False)) or real(*a, **k))
    model = _perturbed().cuda()
    x, t = torch.randn(2, 4, 16, 16, device="cuda"), torch.rand(2, device="cuda") * 1000
    passes = 2 * len(model.blocks) + 1  # two per block, one in the final layer
    monkeypatch.setattr(fused_norm_train, "enabled", False)
    model(x, t).square().mean().backward()  # training, kernels off: plain path, gradients flow
    assert calls == [] and model.blocks[0].scale_shift_table.grad is not None
    monkeypatch.setattr(fused_norm_train, "enabled", True)
    model.zero_grad()
    model(x, t).square().mean().backward()
    assert calls == [True] * passes and model.blocks[0].scale_shift_table.grad is not None
    calls.clear()
    with torch.no_grad():
        model(x, t)
    assert calls == [False] * passes
