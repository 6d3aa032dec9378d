"""CUTLASS epilogue GEMMs for Hopper (``hddm_p2p.models.sm90_gemm``): each epilogue against PyTorch on an
sm_90 GPU, the MLP's training step through them against cuBLASLt's, and, anywhere, how the build is keyed,
assembled and refused."""

import ctypes
import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hddm_p2p.models import cublaslt, fused_mlp, sm90_gemm
from hddm_p2p.models.layers import Mlp

hopper = pytest.mark.skipif(not (torch.cuda.is_available() and torch.cuda.get_device_capability() == (9, 0)),
                            reason="needs an sm_90 (Hopper) GPU")


@pytest.fixture
def sm90_on():
    was = sm90_gemm.enabled
    sm90_gemm.enabled = True
    if not sm90_gemm.available():
        sm90_gemm.enabled = was
        pytest.skip(f"sm90_gemm not built here: {sm90_gemm._state.get('error')}")
    yield
    sm90_gemm.enabled = was


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_nothing_runs_off_a_hopper_gpu():
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    assert not sm90_gemm.runnable("bias", x)  # CPU tensor: never this path
    if not torch.cuda.is_available():
        assert not sm90_gemm.available()


@hopper
def test_rows_the_kernels_cannot_load_fall_back(sm90_on):
    """A row length that is not a multiple of 8 (16 bytes) is refused up front, and the ops take cuBLASLt's
    or PyTorch's path with the same result."""
    x = torch.randn(64, 36, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(128, 36, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(128, device="cuda", dtype=torch.bfloat16)
    assert not sm90_gemm.runnable("gelu_bias", x, w, b)
    ref = F.gelu(F.linear(x.float(), w.float(), b.float()), approximate="tanh")
    assert _rel(cublaslt.linear_gelu(x, w, b), ref) < 1e-2


def test_one_translation_unit_per_epilogue_and_config(tmp_path):
    cmds = sm90_gemm.compile_commands("nvcc", [tmp_path / "inc"], tmp_path)
    assert len(cmds) == len(sm90_gemm.EPILOGUES) * len(sm90_gemm.CONFIGS)
    outs = {c[-1] for c in cmds}
    assert len(outs) == len(cmds)  # no two units write the same object
    for c in cmds:
        assert "-gencode=arch=compute_90a,code=sm_90a" in c  # wgmma needs the sm_90a target
        assert any(a.startswith("-DHDDM_EPI=") for a in c) and any(a.startswith("-DHDDM_CFG=") for a in c)
        assert any(a.startswith("-DHDDM_SCHEDULE=") for a in c)  # the tile config comes from CONFIGS


def test_the_cache_key_follows_the_source_and_flags(tmp_path, monkeypatch):
    monkeypatch.setattr(sm90_gemm, "_compiler_id", lambda nvcc: "nvcc 13.0")
    inc = [tmp_path]
    a = sm90_gemm.library_path("nvcc", inc)
    assert a == sm90_gemm.library_path("nvcc", inc)
    assert a != sm90_gemm.library_path("nvcc", inc, extra=("-lineinfo",))
    src = tmp_path / "k.cu"
    src.write_text("// another kernel\n")
    monkeypatch.setattr(sm90_gemm, "SOURCE", src)
    assert sm90_gemm.library_path("nvcc", inc) != a


def test_build_without_a_compiler_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDACXX", str(tmp_path / "no-nvcc"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sm90_gemm, "find_nvcc", lambda: None)
    with pytest.raises(sm90_gemm.BuildError, match="nvcc or CUTLASS"):
        sm90_gemm.build(out=tmp_path / "lib.so")
    assert not (tmp_path / "lib.so").exists()


def _toolchain():
    """nvcc and CUTLASS's headers for the compile tests: ``make test`` installs both (``scripts/install_nvcc.sh``)
    and names them in $HDDM_TEST_NVCC / $HDDM_TEST_CUTLASS_DIR; else the machine's own, if any."""
    nvcc = os.environ.get("HDDM_TEST_NVCC") or sm90_gemm.find_nvcc()
    root = os.environ.get("HDDM_TEST_CUTLASS_DIR")
    if root:
        includes = [Path(root) / "include", Path(root) / "tools" / "util" / "include"]
    else:
        includes = sm90_gemm.cutlass_include()
    if not (nvcc and Path(nvcc).is_file() and includes and (includes[0] / "cutlass" / "cutlass.h").is_file()):
        pytest.skip("needs nvcc and CUTLASS's headers (make nvcc)")
    return nvcc, includes


def test_the_cuda_source_compiles_for_sm90a_and_links_one_library(tmp_path, monkeypatch):
    """The real source, one tile shape of each epilogue, through ``build``: every unit compiles for sm_90a, the
    library links, loads without a GPU and exports one entry point (and its workspace query) per unit."""
    nvcc, includes = _toolchain()
    monkeypatch.setattr(sm90_gemm, "CONFIGS", {0: sm90_gemm.CONFIGS[0]})
    out = sm90_gemm.build(nvcc, includes, jobs=2, out=tmp_path / "sm90_gemm.so")
    lib = ctypes.CDLL(str(out))
    for e in sm90_gemm.EPILOGUES.values():
        assert getattr(lib, f"hddm_sm90_epi{e}_cfg0") and getattr(lib, f"hddm_sm90_epi{e}_cfg0_workspace")
    assert [p.name for p in tmp_path.iterdir()] == ["sm90_gemm.so"]  # the objects went with the temp dir


def test_a_failing_unit_leaves_no_library(tmp_path, monkeypatch):
    """A source that does not compile: a one-line BuildError naming it, and nothing at the output path."""
    nvcc, includes = _toolchain()
    bad = tmp_path / "bad.cu"
    bad.write_text("this is not C++\n")
    monkeypatch.setattr(sm90_gemm, "SOURCE", bad)
    monkeypatch.setattr(sm90_gemm, "CONFIGS", {0: sm90_gemm.CONFIGS[0]})
    monkeypatch.setattr(sm90_gemm, "EPILOGUES", {"bias": 0})
    with pytest.raises(sm90_gemm.BuildError, match="did not compile") as err:
        sm90_gemm.build(nvcc, includes, out=tmp_path / "lib.so")
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == [bad]


@hopper
@pytest.mark.parametrize("m,n,k", [(512, 384, 128), (300, 1152, 384)])
def test_each_epilogue_matches_pytorch(sm90_on, m, n, k):
    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    x = torch.randn(m, k, device=dev, dtype=bf)
    w = (torch.randn(n, k, device=dev) * k ** -0.5).to(bf)
    b = torch.randn(n, device=dev, dtype=bf)
    pre_ref = F.linear(x.float(), w.float(), b.float())
    assert _rel(sm90_gemm.gemm(x, w, epilogue="bias", bias=b), pre_ref) < 1e-2
    gelu_ref = F.gelu(pre_ref, approximate="tanh")
    assert _rel(sm90_gemm.gemm(x, w, epilogue="gelu_bias", bias=b), gelu_ref) < 1e-2
    pre = torch.full((m, n), float("nan"), device=dev, dtype=bf)
    h = sm90_gemm.gemm(x, w, epilogue="gelu_aux_bias", bias=b, aux=pre)
    assert _rel(h, gelu_ref) < 1e-2 and _rel(pre, pre_ref) < 1e-2
    grad = torch.randn(m, k, device=dev, dtype=bf)
    w2 = (torch.randn(k, n, device=dev) * n ** -0.5).to(bf)  # fc2's weight (out=k, in=n)
    ref = torch.ops.aten.gelu_backward(grad.float() @ w2.float(), pre.float(), approximate="tanh")
    assert _rel(sm90_gemm.gemm(grad, w2, epilogue="dgelu", aux=pre), ref) < 1e-2
    assert {key[0] for key in sm90_gemm.choices} >= {"bias", "gelu_bias", "gelu_aux_bias", "dgelu"}


@hopper
def test_mlp_training_step_through_sm90_matches_cublaslt(sm90_on):
    """The same fused MLP forward and backward with the CUTLASS kernels and with cuBLASLt's epilogues."""
    torch.manual_seed(0)
    mlp = Mlp(384, 1536).cuda().to(torch.bfloat16)
    x = torch.randn(2, 256, 384, device="cuda", dtype=torch.bfloat16)

    def step():
        mlp.zero_grad()
        xi = x.clone().requires_grad_()
        out = fused_mlp.training(mlp.fc1, mlp.fc2, xi)
        torch.manual_seed(1)
        (out.float() * torch.randn_like(out, dtype=torch.float32)).sum().backward()
        return [out, xi.grad] + [p.grad.clone() for p in mlp.parameters()]

    sm90_gemm.choices.clear()
    got = step()
    assert any(key[0] == "dgelu" for key in sm90_gemm.choices)  # the backward took the CUTLASS kernel
    sm90_gemm.enabled = False
    ref = step()
    assert cublaslt.available()
    for g, r in zip(got, ref):
        assert _rel(g, r) < 2e-2


@hopper
def test_sampling_mlp_under_a_cuda_graph(sm90_on):
    """fc1 + GELU through the CUTLASS kernel replays inside a CUDA graph (the tile shape picked before capture)."""
    torch.manual_seed(0)
    mlp = Mlp(384, 1536).cuda().to(torch.bfloat16).eval()
    x = torch.randn(4, 256, 384, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        eager = mlp(x)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            mlp(x)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = mlp(x)
        x.copy_(torch.randn_like(x))
        graph.replay()
        torch.cuda.synchronize()
        assert _rel(out, mlp(x)) < 1e-2 and _rel(eager, out) > 1e-2


@pytest.fixture
def residual_on():
    was = sm90_gemm.residual
    sm90_gemm.residual = True
    yield
    sm90_gemm.residual = was


def test_the_residual_chain_is_on_by_default_where_its_kernel_runs(monkeypatch):
    """Sampling chains the blocks through the gated-residual GEMM by default only where that kernel runs;
    True forces the chain (the op's PyTorch sum elsewhere), False turns it off."""
    assert sm90_gemm.residual == "auto"
    assert not sm90_gemm.residual_chain(torch.device("cpu"))
    monkeypatch.setattr(sm90_gemm, "available", lambda: True)
    monkeypatch.setattr(sm90_gemm, "has", lambda epilogue: epilogue == "gated_residual")
    assert sm90_gemm.residual_chain(torch.device("cuda", 0)) and not sm90_gemm.residual_chain(torch.device("cpu"))
    monkeypatch.setattr(sm90_gemm, "has", lambda epilogue: False)  # a library built before the epilogue existed
    assert not sm90_gemm.residual_chain(torch.device("cuda", 0))
    monkeypatch.setattr(sm90_gemm, "residual", True)
    assert sm90_gemm.residual_chain(torch.device("cpu"))
    monkeypatch.setattr(sm90_gemm, "residual", False)
    monkeypatch.setattr(sm90_gemm, "has", lambda epilogue: True)
    assert not sm90_gemm.residual_chain(torch.device("cuda", 0))


@pytest.mark.parametrize("adaln", ["single", "zero"])
def test_the_fused_residual_chain_is_the_plain_forward(residual_on, adaln):
    """``DiTBlock.forward_fused_residual`` (each gated residual added by the branch's GEMM) gives what the plain
    blocks give; off a Hopper GPU the op's PyTorch sum stands in for the epilogue."""
    from hddm_p2p.models import build_dit
    from hddm_p2p.models.layers import DiTBlock

    torch.manual_seed(0)
    model = build_dit("DiT-S/2", input_size=16, in_channels=4, num_classes=10, adaln=adaln).eval()
    for p in model.parameters():  # DiT's zero-initialised gates and output would hide a wrong residual
        torch.nn.init.normal_(p, std=0.05)
    x, t, y = torch.randn(3, 4, 16, 16), torch.rand(3) * 999, torch.randint(0, 10, (3,))
    calls = []
    chained = DiTBlock.forward_fused_residual
    with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(DiTBlock, "forward_fused_residual", lambda self, h, c: calls.append(1) or chained(self, h, c))
        got = model(x, t, y)
        sm90_gemm.residual = False
        ref = model(x, t, y)
    assert len(calls) == len(model.blocks)
    assert torch.allclose(got, ref, atol=1e-5) and ref.abs().max() > 0.1


def test_the_gated_residual_op_compiles_and_sums_per_sample():
    """The custom op under torch.compile (its fake kernel gives the shape), gate rows strided as the model's
    signals are (one (B, 6, N) tensor)."""
    torch.manual_seed(0)
    b, t, k, n = 2, 16, 24, 32
    x, w, bias = torch.randn(b * t, k), torch.randn(n, k), torch.randn(n)
    gate = torch.randn(b, 6, n)[:, 2]
    res = torch.randn(b * t, n)
    out = torch.compile(sm90_gemm.linear_gated_residual, fullgraph=True)(x, w, bias, gate, res)
    ref = res.view(b, t, n) + gate[:, None] * (x @ w.t() + bias).view(b, t, n)
    assert torch.allclose(out, ref.view(b * t, n), atol=1e-5)


@hopper
def test_the_gated_residual_epilogue_matches_pytorch(sm90_on):
    torch.manual_seed(0)
    dev, bf = "cuda", torch.bfloat16
    b, t, k, n = 8, 256, 384, 1152
    x = torch.randn(b * t, k, device=dev, dtype=bf)
    w = (torch.randn(n, k, device=dev) * k ** -0.5).to(bf)
    bias = torch.randn(n, device=dev, dtype=bf)
    gate = torch.randn(b, 6, n, device=dev, dtype=bf)[:, 2]  # a strided view, as DiTBlock.signals gives
    res = torch.randn(b * t, n, device=dev, dtype=bf)
    assert sm90_gemm.gate_ok(gate, b * t)
    sm90_gemm.choices.clear()
    out = sm90_gemm.linear_gated_residual(x, w, bias, gate, res)
    assert any(key[0] == "gated_residual" and key[-1] == b for key in sm90_gemm.choices)
    ref = res.float().view(b, t, n) + gate.float()[:, None] * F.linear(x.float(), w.float(), bias.float()).view(b, t, n)
    assert _rel(out, ref.view(b * t, n)) < 1e-2


@hopper
def test_dit_sampling_with_the_fused_residual_on_the_gpu(sm90_on, residual_on):
    from hddm_p2p.models import build_dit

    torch.manual_seed(0)
    model = build_dit("DiT-S/2", input_size=32, in_channels=4, num_classes=10).cuda().to(torch.bfloat16).eval()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    x = torch.randn(8, 4, 32, 32, device="cuda", dtype=torch.bfloat16)
    t, y = torch.rand(8, device="cuda") * 999, torch.randint(0, 10, (8,), device="cuda")
    with torch.inference_mode():
        sm90_gemm.choices.clear()
        got = model(x, t, y)
        assert any(key[0] == "gated_residual" for key in sm90_gemm.choices)
        sm90_gemm.residual = False
        ref = model(x, t, y)
    assert _rel(got, ref) < 2e-2
