"""Linear layers under half autocast with their weight gradients from the GEMM in fp32 (``weight_grads``): the same
forward and input gradient as autocast's, weight and bias gradients without autocast's rounding to bf16, and a DiT
that trains through them. On the CPU the fp32 GEMM output is stood in for by fp32 copies of the operands."""

import pytest
import torch

from hddm_p2p.models import build_dit, fused_mlp, weight_grads

_linear = weight_grads.linear


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def fp32_grads(monkeypatch):
    monkeypatch.setattr(weight_grads, "enabled", True)


def _step(layer, x, bias_grad=True):
    layer.zero_grad()
    x = x.detach().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fused_mlp.linear(layer, x, bias_grad)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.dtype)
    out.backward(g)
    return out, x.grad, g


def test_linear_matches_autocast_and_keeps_the_weight_gradient_in_fp32(monkeypatch):
    monkeypatch.setattr(weight_grads, "transposed", False)  # the reference: autocast's own gradients
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(48, 40), torch.randn(3, 7, 48) * 4
    out_ref, dx_ref, g = _step(layer, x)
    w_ref, b_ref = layer.weight.grad.clone(), layer.bias.grad.clone()
    monkeypatch.setattr(weight_grads, "enabled", True)
    calls = []
    monkeypatch.setattr(weight_grads, "linear", lambda *a: calls.append(1) or _linear(*a))
    out, dx, _ = _step(layer, x)
    assert calls  # the layer took the fp32-gradient path
    assert out.dtype == torch.bfloat16 and torch.equal(out, out_ref) and torch.equal(dx, dx_ref)
    assert layer.weight.grad.dtype == layer.bias.grad.dtype == torch.float32
    # against fp64 from the bf16 operands both GEMMs saw: ours is exact to fp32, autocast's rounded to bf16
    xb, gb = x.to(torch.bfloat16).double().reshape(-1, 48), g.double().reshape(-1, 40)
    exact_w, exact_b = gb.t() @ xb, gb.sum(0)
    for ours, theirs, exact in ((layer.weight.grad, w_ref, exact_w), (layer.bias.grad, b_ref, exact_b)):
        ours_err = ((ours.double() - exact).abs().max() / exact.abs().max()).item()
        theirs_err = ((theirs.double() - exact).abs().max() / exact.abs().max()).item()
        assert ours_err < 1e-6 < theirs_err < 1e-2, (ours_err, theirs_err)
    _, _, _ = _step(layer, x, bias_grad=False)  # a detached bias: no gradient through here
    assert layer.bias.grad is None and layer.weight.grad is not None


def test_usable_only_for_half_compute_with_an_autograd_graph(fp32_grads):
    layer, x = torch.nn.Linear(8, 8), torch.randn(2, 8)
    assert not weight_grads.usable(x, layer.weight)  # fp32 compute: nothing to cast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert weight_grads.usable(x, layer.weight)
        with torch.no_grad():
            assert not weight_grads.usable(x, layer.weight)
        assert not weight_grads.usable(x, layer.weight.detach())


def test_dit_trains_through_the_fp32_gradient_linears(monkeypatch):
    """A DiT's qkv, proj, fc1 and fc2 take the fp32-gradient path; every gradient is fp32 and close to autocast's."""
    torch.manual_seed(0)
    model = build_dit("tiny", input_size=8, in_channels=4)
    x, t = torch.randn(2, 4, 8, 8), torch.rand(2)

    def grads():
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x, t).float().square().mean()
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    ref = grads()
    calls = []
    apply = weight_grads._Linear.apply
    monkeypatch.setattr(weight_grads._Linear, "apply", lambda *a: calls.append(a[1].shape) or apply(*a))
    monkeypatch.setattr(weight_grads, "enabled", True)
    got = grads()
    assert len(calls) >= 4 * len(model.blocks) and set(got) == set(ref)
    for name, g in got.items():
        assert g.dtype == torch.float32
        assert ((g - ref[name]).norm() / ref[name].norm().clamp_min(1e-12)).item() < 2e-2, name


def test_fused_mlp_gives_fp32_parameters_fp32_gradients():
    """The MLP's fused training function (its cuBLASLt ops' PyTorch fallbacks here) takes fp32 parameters, casts
    them itself, and returns their gradients in fp32: the same output and input gradient as with half parameters,
    and gradients the half ones round."""
    from hddm_p2p.models.layers import Mlp

    torch.manual_seed(0)
    mlp, x = Mlp(24, 96, 40), torch.randn(33, 24).to(torch.bfloat16)
    full = [mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias]
    half = [p.detach().to(torch.bfloat16).requires_grad_() for p in full]
    results = []
    for params in (half, full):
        xi = x.clone().requires_grad_()
        out = fused_mlp._FusedMlp.apply(xi, *params)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.dtype))
        results.append((out, xi.grad, [p.grad for p in params]))
    (out_h, dx_h, grads_h), (out_f, dx_f, grads_f) = results
    assert torch.equal(out_h, out_f) and torch.equal(dx_h, dx_f)
    for g_h, g_f in zip(grads_h, grads_f):
        assert g_h.dtype == torch.bfloat16 and g_f.dtype == torch.float32
        assert 0 < ((g_f - g_h.float()).norm() / g_f.norm()).item() < 1e-2


@cuda
def test_the_gemm_writes_fp32_on_cuda():
    """cuBLAS's fp32 output of a bf16 GEMM (the path ``matmul_fp32`` takes on CUDA) equals the fp32 product of the
    same values to fp32 accumulation error."""
    torch.manual_seed(0)
    a, b = (torch.randn(256, 512, device="cuda").to(torch.bfloat16) for _ in range(2))
    out = weight_grads.matmul_fp32(a, b.t())
    ref = a.double() @ b.double().t()
    assert out.dtype == torch.float32 and ((out.double() - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_transposed_half_weight_gradients_match_autocasts(monkeypatch):
    """With ``transposed`` the layer's half weight gradient is the transposed product (xᵀ·g)ᵀ, laid out as the
    weight and cast to fp32: the same bf16 values autocast's gᵀ·x gives, for the layers it applies to (fewer outputs
    than inputs); the fp32 path, where on, comes first."""
    torch.manual_seed(0)
    layer, x = torch.nn.Linear(48, 40), torch.randn(3, 7, 48) * 4
    monkeypatch.setattr(weight_grads, "transposed", False)  # the reference: autocast's own gradients
    out_ref, dx_ref, _ = _step(layer, x)
    w_ref, b_ref = layer.weight.grad.clone(), layer.bias.grad.clone()
    monkeypatch.setattr(weight_grads, "transposed", True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert weight_grads.transposing(x, layer.weight)
        assert not weight_grads.transposes(torch.empty(4 * 48, 48))  # fc1's shape: as it is
        assert not weight_grads.transposes(torch.empty(48, 48))  # proj's: the same GEMM either way
        monkeypatch.setattr(weight_grads, "enabled", True)
        assert not weight_grads.transposing(x, layer.weight)  # the fp32 path instead
        monkeypatch.setattr(weight_grads, "enabled", False)
    products = []
    real_mm = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: products.append((a.shape, b.shape)) or real_mm(a, b))
    out, dx, _ = _step(layer, x)
    assert ((48, 21), (21, 40)) in products  # xᵀ·g: the transposed product was computed
    assert torch.equal(out, out_ref) and torch.equal(dx, dx_ref)
    assert layer.weight.grad.dtype == torch.float32 and layer.weight.grad.is_contiguous()
    assert torch.equal(layer.weight.grad, w_ref)  # the same bf16 products, cast
    assert torch.allclose(layer.bias.grad, b_ref, rtol=1e-2, atol=1e-2)  # summed in fp32 here, bf16 there
