"""cuBLASLt epilogue matmuls (``hddm_p2p.models.cublaslt``) and the MLP built on them (``fused_mlp``): each
op against plain PyTorch, the fused MLP's gradients against autograd's. The CPU tests check the ops'
fallbacks and the backward's algebra; the CUDA tests (GPU machine) check the cuBLASLt calls themselves."""

import pytest
import torch
import torch.nn.functional as F

from hddm_p2p.models import cublaslt, fused_mlp, weight_grads
from hddm_p2p.models.layers import Mlp

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _mlp_grads(mlp, x, fused):
    mlp.zero_grad()
    x = x.clone().requires_grad_()
    if fused:
        params = (mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight, mlp.fc2.bias)
        out = fused_mlp._FusedMlp.apply(x, *params)
    else:
        out = mlp.fc2(F.gelu(mlp.fc1(x), approximate="tanh"))
    torch.manual_seed(1)
    (out * torch.randn_like(out)).sum().backward()
    return [out.detach(), x.grad] + [p.grad.clone() for p in mlp.parameters()]


@pytest.mark.parametrize("transposed", [False, True])
def test_fused_mlp_backward_is_autograds_on_cpu(monkeypatch, transposed):
    """The hand-written backward (weight, bias and input gradients of both layers, GELU' applied to the
    pre-activation) equals autograd's, through the ops' PyTorch fallbacks; fc2's weight gradient also as the
    transposed product, laid out as the weight is."""
    monkeypatch.setattr(weight_grads, "transposed", transposed)
    torch.manual_seed(0)
    mlp = Mlp(24, 96, 40).double()
    x = torch.randn(33, 24, dtype=torch.float64)
    for got, ref in zip(_mlp_grads(mlp, x, True), _mlp_grads(mlp, x, False)):
        assert got.shape == ref.shape and got.is_contiguous() and torch.allclose(got, ref, atol=1e-10)


def test_ops_fall_back_to_pytorch_off_cuda():
    torch.manual_seed(0)
    x, w, b = torch.randn(16, 8), torch.randn(12, 8), torch.randn(12)
    assert not cublaslt.usable(x)
    assert torch.allclose(cublaslt.linear_bias(x, w, b), F.linear(x, w, b), atol=1e-6)
    h, pre = cublaslt.linear_gelu_aux(x, w, b)
    assert torch.allclose(pre, F.linear(x, w, b), atol=1e-6)
    assert torch.allclose(h, F.gelu(pre, approximate="tanh"), atol=1e-6)
    assert torch.allclose(cublaslt.matmul_dgelu(torch.ones(16, 12), w, pre[:, :8]),
                          torch.ops.aten.gelu_backward(torch.ones(16, 12) @ w, pre[:, :8], approximate="tanh"))
    assert fused_mlp.path(Mlp(8, 12).fc1, Mlp(8, 12).fc2, x, True, True) is None  # CPU: plain MLP


@cuda
@pytest.mark.parametrize("m,k,n", [(4096, 256, 1024), (1000, 72, 200)])
def test_epilogue_ops_match_pytorch_on_cuda(m, k, n):
    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    x, w, b = (torch.randn(m, k, device=dev, dtype=bf), torch.randn(n, k, device=dev, dtype=bf) / k ** 0.5,
               torch.randn(n, device=dev, dtype=bf))
    pre_ref = F.linear(x.float(), w.float(), b.float())
    assert _rel(cublaslt.linear_bias(x, w, b), pre_ref) < 1e-2
    assert _rel(cublaslt.linear_gelu(x, w, b), F.gelu(pre_ref, approximate="tanh")) < 1e-2
    h, pre = cublaslt.linear_gelu_aux(x, w, b)
    assert _rel(pre, pre_ref) < 1e-2 and _rel(h, F.gelu(pre_ref, approximate="tanh")) < 1e-2
    w2 = torch.randn(k, n, device=dev, dtype=bf) / n ** 0.5  # an fc2 (out k, in n)
    g = torch.randn(m, k, device=dev, dtype=bf)
    grad_pre, grad_b = cublaslt.matmul_dgelu_bgrad(g, w2, pre)
    ref = torch.ops.aten.gelu_backward(g.float() @ w2.float(), pre.float(), approximate="tanh")
    assert _rel(grad_pre, ref) < 1e-2 and _rel(grad_b, ref.sum(0)) < 2e-2
    assert _rel(cublaslt.matmul_dgelu(g, w2, pre), ref) < 1e-2
    assert any(key[:3] == (m, n, k) for key in cublaslt.choices) or not cublaslt.autotune


@cuda
def test_ops_fall_back_when_misaligned_or_strided():
    x = torch.randn(64, 33, device="cuda", dtype=torch.bfloat16)[:, 1:]  # not contiguous, not aligned
    w, b = torch.randn(16, 32, device="cuda", dtype=torch.bfloat16), torch.randn(16, device="cuda", dtype=torch.bfloat16)
    assert _rel(cublaslt.linear_gelu(x, w, b), F.gelu(F.linear(x.float(), w.float(), b.float()), approximate="tanh")) < 1e-2


@cuda
def test_fused_mlp_trains_like_the_plain_mlp_under_bf16_autocast():
    torch.manual_seed(0)
    mlp = Mlp(128, 512).cuda()
    x = torch.randn(4, 256, 128, device="cuda")
    grads = {}
    for fused in (True, False):
        Mlp.fused_gelu_training = fused
        mlp.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = mlp(x)
        out.float().square().mean().backward()
        grads[fused] = [out.detach()] + [p.grad.clone() for p in mlp.parameters()]
    Mlp.fused_gelu_training = True
    for got, ref in zip(grads[True], grads[False]):
        assert got.dtype == ref.dtype and _rel(got, ref) < 2e-2


@cuda
@pytest.mark.parametrize("transposed", [False, True])
def test_compiled_dit_training_step_matches_with_the_fused_mlp(monkeypatch, transposed):
    from tests.models.dit_step import perturbed_cuda_dit

    monkeypatch.setattr(weight_grads, "transposed", transposed)
    model, x, t = perturbed_cuda_dit()
    grads = {}
    for fused in (False, True):
        Mlp.fused_gelu_training = fused
        model.zero_grad()
        torch._dynamo.reset()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = torch.compile(model)(x, t)
        out.float().square().mean().backward()
        grads[fused] = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    Mlp.fused_gelu_training = True
    assert all(g.is_contiguous() for g in grads[True])
    assert len(grads[True]) == len(grads[False])
    worst = max(_rel(a, b) for a, b in zip(grads[True], grads[False]) if b.norm() > 0)
    assert worst < 5e-2, worst


def _shipped_cublaslt():
    from pathlib import Path

    found = sorted(Path(torch.__file__).parents[1].glob("nvidia/*/lib/libcublasLt.so*"))
    return str(found[0]) if found else None


def test_ctypes_prototypes_match_the_cublaslt_torch_ships():
    """The host-side calls (descriptors, layouts, preferences) need no GPU: on a CPU machine with torch's
    CUDA wheels the binding is checked against the real library, and a rejected call names itself."""
    import ctypes

    path = _shipped_cublaslt()
    if path is None:
        pytest.skip("this torch ships no libcublasLt")
    lib = cublaslt._Lib(ctypes.CDLL(path))
    for epilogue, code in cublaslt.EPILOGUES.items():
        desc = ctypes.c_void_p()
        lib.MatmulDescCreate(ctypes.byref(desc), cublaslt._COMPUTE_32F, cublaslt._R_32F)
        cublaslt._set(lib.MatmulDescSetAttribute, desc, cublaslt._DESC_TRANSA, ctypes.c_int(cublaslt._OP_T))
        cublaslt._set(lib.MatmulDescSetAttribute, desc, cublaslt._DESC_EPILOGUE, ctypes.c_uint32(code))
        cublaslt._set(lib.MatmulDescSetAttribute, desc, cublaslt._DESC_AUX_LD, ctypes.c_int64(4608))
        with pytest.raises(RuntimeError, match="cublasLtMatmulDescSetAttribute failed"):
            cublaslt._set(lib.MatmulDescSetAttribute, desc, 9999, ctypes.c_int(1))
        lib.MatmulDescDestroy(desc)
    layout, pref = ctypes.c_void_p(), ctypes.c_void_p()
    lib.MatrixLayoutCreate(ctypes.byref(layout), cublaslt._R_16BF, 1152, 4608, 1152)
    lib.MatmulPreferenceCreate(ctypes.byref(pref))
    cublaslt._set(lib.MatmulPreferenceSetAttribute, pref, cublaslt._PREF_MAX_WORKSPACE, ctypes.c_uint64(1 << 25))
    lib.MatmulPreferenceDestroy(pref)
    lib.MatrixLayoutDestroy(layout)
    assert ctypes.sizeof(cublaslt._Heuristic) == 96  # cublasLtMatmulHeuristicResult_t
