"""The training forward's bias GEMMs through CUTLASS (``bias_gemm``): the op against ``torch.addmm``, a DiT trained
through it against autocast's own linear layers, and on a Hopper GPU a compiled step with the kernels running."""

import pytest
import torch

from hddm_p2p.models import bias_gemm, build_dit, sm90_gemm


def test_addmm_is_x_times_w_transposed_plus_b_and_a_valid_op():
    torch.manual_seed(0)
    x, w, b = torch.randn(6, 8), torch.randn(5, 8), torch.randn(5)
    assert torch.allclose(bias_gemm.addmm(x, w, b), torch.addmm(b, x, w.t()))
    torch.library.opcheck(bias_gemm.addmm, (x, w, b))  # schema, fake tensor, no aliasing


def test_runs_only_when_enabled_on_an_sm90_gpu(monkeypatch):
    assert not bias_gemm.runs(torch.device("cpu"))  # off by default
    monkeypatch.setattr(bias_gemm, "enabled", True)
    assert not bias_gemm.runs(torch.device("cpu"))


def test_linear_keeps_the_leading_dimensions(monkeypatch):
    monkeypatch.setattr(bias_gemm, "runs", lambda device: True)
    x, w, b = torch.randn(2, 3, 8), torch.randn(5, 8), torch.randn(5)
    out = bias_gemm.linear(x, w, b)
    assert out.shape == (2, 3, 5) and torch.allclose(out, torch.nn.functional.linear(x, w, b), atol=1e-6)
    assert torch.equal(bias_gemm.linear(x, w, None), torch.nn.functional.linear(x, w))  # no bias: no epilogue


def test_dit_trains_through_the_bias_gemms(monkeypatch):
    """Under bf16 autocast a DiT's qkv, proj, fc1 and fc2 go through the op (its fallback here, off the GPU), and
    every gradient stays fp32 and close to autocast's own."""
    torch.manual_seed(0)
    model = build_dit("tiny", input_size=8, in_channels=4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2) * 1000

    def grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x, t).float().square().mean()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref = grads()
    calls = []
    addmm = bias_gemm.addmm
    monkeypatch.setattr(bias_gemm, "addmm", lambda *a: calls.append(a[1].shape) or addmm(*a))
    monkeypatch.setattr(bias_gemm, "runs", lambda device: True)
    got = grads()
    assert len(calls) == 4 * len(model.blocks), calls
    assert set(got) == set(ref)
    for name, g in got.items():
        assert g.dtype == torch.float32
        assert ((g - ref[name]).norm() / ref[name].norm().clamp_min(1e-12)).item() < 2e-2, name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compiled_dit_training_step_matches_with_the_cutlass_forward(monkeypatch):
    """On a Hopper GPU with the sm90 library: a compiled step under bf16 autocast gives the same gradients with the
    forward's bias GEMMs through CUTLASS as through cuBLAS, and the CUTLASS bias kernel did run."""
    if not (sm90_gemm.available() and sm90_gemm.has("bias")):
        pytest.skip("needs the sm90 GEMM library on an sm_90 GPU")
    from tests.models.dit_step import perturbed_cuda_dit

    model, x, t = perturbed_cuda_dit(bf16_residual=True)
    grads = {}
    for on in (False, True):
        monkeypatch.setattr(bias_gemm, "enabled", on)
        sm90_gemm.choices.clear()
        torch._dynamo.reset()
        model.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = torch.compile(model)(x, t)
        out.float().square().mean().backward()
        grads[on] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        assert any(key[0] == "bias" for key in sm90_gemm.choices) == on
    assert grads[True].keys() == grads[False].keys()
    worst = max(((grads[True][n] - g).float().norm() / g.float().norm()).item()
                for n, g in grads[False].items() if g.norm() > 0)
    assert worst < 5e-2, worst
