"""cuBLASLt matmuls with fused epilogues and a measured choice of algorithm, for CUDA.

PyTorch runs a linear layer through cuBLASLt with the first algorithm its heuristic suggests, and exposes
only two epilogues (bias; bias + GELU through ``torch._addmm_activation``). This module calls cuBLASLt
itself (through ``ctypes``, on the library torch already loaded), so that

* each GEMM shape + epilogue gets the fastest of the heuristic's candidates, timed once on the real
  operands the first time the shape is seen (the heuristic's first pick wins unless another is > 1 %
  faster; ``choices`` records what was picked and by how much);
* the epilogues PyTorch leaves out are there for training: GELU_AUX_BIAS (fc1 + bias + GELU that also
  keeps the pre-activation for the backward), DGELU (fc2's input gradient times GELU'(pre)) and
  DGELU_BGRAD (the same, plus fc1's bias gradient).

Each public function is a ``torch.library.custom_op`` so ``torch.compile`` calls it as an opaque kernel.
``usable`` says whether a call may take this path (the library found, CUDA, bf16/fp16); each op checks
contiguity and 16-byte alignment when it runs and otherwise computes the same in plain PyTorch (which
is also what it does on the CPU). One workspace per device: call from one
stream at a time. All GELUs here are the tanh approximation (as DiT's ``GELU(approximate="tanh")``).
"""

from __future__ import annotations

import ctypes
import statistics
import threading
from dataclasses import dataclass

import torch

from hddm_p2p.models import sm90_gemm

Tensor = torch.Tensor

enabled: bool = True  # False: callers take the plain PyTorch path (benchmarks and tests compare the two)
autotune: bool = True  # False: the heuristic's first algorithm, as PyTorch would pick
# sampling: a DiT block's qkv, proj, fc1 + GELU and fc2 through here (``fused_mlp``). Off by default: on an
# H200 it measured within noise of PyTorch's own pick (docs/benchmarks.md, 2026-12-01 runs 8-9).
sampling: bool = False
choices: dict[tuple, dict] = {}  # plan key → {"candidates", "picked", "ms", "heuristic_ms"}

# cuBLASLt / CUDA enums (cublasLt.h, cublas_api.h, library_types.h; stable across CUDA 12 and 13)
_COMPUTE_32F, _R_32F, _R_16F, _R_16BF = 68, 0, 2, 14
_OP_N, _OP_T = 0, 1
_DESC_TRANSA, _DESC_TRANSB, _DESC_EPILOGUE, _DESC_BIAS_POINTER = 3, 4, 7, 8
_DESC_AUX_POINTER, _DESC_AUX_LD = 11, 12
_PREF_MAX_WORKSPACE = 1
EPILOGUES = {"default": 1, "bias": 4, "gelu_bias": 36, "gelu_aux_bias": 164, "dgelu": 192, "dgelu_bgrad": 208}
_WORKSPACE = 32 << 20  # bytes per device, what NVIDIA suggests for Hopper
_CANDIDATES = 16


class _Algo(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64 * 8)]


class _Heuristic(ctypes.Structure):
    _fields_ = [("algo", _Algo), ("workspace_size", ctypes.c_size_t), ("state", ctypes.c_int),
                ("waves", ctypes.c_float), ("reserved", ctypes.c_int * 4)]


def _find_library() -> ctypes.CDLL | None:
    """The libcublasLt torch mapped into this process (one copy of the library), else one by soname."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libcublasLt.so" in line}
    except OSError:
        paths = set()
    for name in sorted(paths) + ["libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"]:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


class _Lib:
    """ctypes prototypes of the cuBLASLt calls used here, each checked for CUBLAS_STATUS_SUCCESS."""

    def __init__(self, cdll: ctypes.CDLL):
        P, vp, i, sz = ctypes.POINTER, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
        protos = {
            "cublasLtCreate": [P(vp)],
            "cublasLtMatmulDescCreate": [P(vp), i, i],
            "cublasLtMatmulDescSetAttribute": [vp, i, vp, sz],
            "cublasLtMatrixLayoutCreate": [P(vp), i, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64],
            "cublasLtMatmulPreferenceCreate": [P(vp)],
            "cublasLtMatmulPreferenceSetAttribute": [vp, i, vp, sz],
            "cublasLtMatmulAlgoGetHeuristic": [vp, vp, vp, vp, vp, vp, vp, i, P(_Heuristic), P(i)],
            "cublasLtMatmul": [vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, vp, P(_Algo), vp, sz, vp],
            "cublasLtMatmulPreferenceDestroy": [vp],
            "cublasLtMatmulDescDestroy": [vp],
            "cublasLtMatrixLayoutDestroy": [vp],
        }
        for name, args in protos.items():
            fn = getattr(cdll, name)
            fn.argtypes, fn.restype = args, ctypes.c_int
            setattr(self, name[len("cublasLt"):], self._checked(name, fn))

    @staticmethod
    def _checked(name, fn):
        def call(*args):
            if (status := fn(*args)) != 0:
                raise RuntimeError(f"{name} failed with cuBLAS status {status}")
        return call


_lock = threading.Lock()
_handles: dict[int, ctypes.c_void_p] = {}
_workspaces: dict[int, Tensor] = {}
_plans: dict[tuple, "_Plan"] = {}


def _load() -> _Lib | None:
    cdll = _find_library() if torch.cuda.is_available() else None
    try:
        return _Lib(cdll) if cdll is not None else None
    except AttributeError:  # a cuBLASLt without one of these symbols: PyTorch's path everywhere
        return None


_lib = _load()  # at import, so the checks below read a plain global (torch.compile traces them)


def available() -> bool:
    """``enabled`` and the library found (a CUDA build of torch on a machine with a GPU)."""
    return enabled and _lib is not None


def usable(x: Tensor) -> bool:
    """Whether a call with this input may take the cuBLASLt path: ``available``, x on CUDA in a half
    dtype. (The ops check contiguity and alignment when they run and fall back to PyTorch.)"""
    return available() and x.is_cuda and x.dtype in (torch.bfloat16, torch.float16)


def _runnable(*tensors: Tensor) -> bool:
    """``usable`` for the first operand, and every operand of its dtype and device, contiguous, 16-byte aligned."""
    t0 = tensors[0]
    return usable(t0) and all(t.dtype == t0.dtype and t.device == t0.device and t.is_contiguous()
                              and t.data_ptr() % 16 == 0 for t in tensors)


def _handle(device: int) -> ctypes.c_void_p:
    if device not in _handles:
        h = ctypes.c_void_p()
        _lib.Create(ctypes.byref(h))
        _handles[device] = h
        _workspaces[device] = torch.empty(_WORKSPACE, dtype=torch.uint8, device=f"cuda:{device}")
    return _handles[device]


def _set(setter, obj, attr: int, value: ctypes._SimpleCData) -> None:
    setter(obj, attr, ctypes.byref(value), ctypes.sizeof(value))


@dataclass
class _Plan:
    """Descriptors of one GEMM shape + epilogue and the algorithm picked for it."""

    desc: ctypes.c_void_p
    layouts: tuple  # A, B, D (C = D)
    candidates: list  # _Heuristic results, the heuristic's order
    algo: _Heuristic | None = None


def _plan(key: tuple, m: int, n: int, k: int, w_is_nk: bool, epilogue: str, dtype: torch.dtype,
          device: int, ptrs: dict) -> _Plan:
    """Row-major out (m, n) = x (m, k) @ W.T (W (n, k), a linear layer) or x @ W (W (k, n)), computed as
    the column-major out.T = op(W) @ x.T that cuBLAS expects."""
    lib, cuda_type = _lib, _R_16BF if dtype == torch.bfloat16 else _R_16F
    desc = ctypes.c_void_p()
    lib.MatmulDescCreate(ctypes.byref(desc), _COMPUTE_32F, _R_32F)
    _set(lib.MatmulDescSetAttribute, desc, _DESC_TRANSA, ctypes.c_int(_OP_T if w_is_nk else _OP_N))
    _set(lib.MatmulDescSetAttribute, desc, _DESC_TRANSB, ctypes.c_int(_OP_N))
    _set(lib.MatmulDescSetAttribute, desc, _DESC_EPILOGUE, ctypes.c_uint32(EPILOGUES[epilogue]))
    if epilogue in ("gelu_aux_bias", "dgelu", "dgelu_bgrad"):
        _set(lib.MatmulDescSetAttribute, desc, _DESC_AUX_LD, ctypes.c_int64(n))
    layouts = []
    for rows, cols in ((k, n) if w_is_nk else (n, k), (k, m), (n, m)):
        lay = ctypes.c_void_p()
        lib.MatrixLayoutCreate(ctypes.byref(lay), cuda_type, rows, cols, rows)
        layouts.append(lay)
    _pointers(desc, ptrs)  # the heuristic reads their alignment
    pref = ctypes.c_void_p()
    lib.MatmulPreferenceCreate(ctypes.byref(pref))
    _set(lib.MatmulPreferenceSetAttribute, pref, _PREF_MAX_WORKSPACE, ctypes.c_uint64(_WORKSPACE))
    results, count = (_Heuristic * _CANDIDATES)(), ctypes.c_int()
    a, b, d = layouts
    lib.MatmulAlgoGetHeuristic(_handle(device), desc, a, b, d, d, pref, _CANDIDATES, results, ctypes.byref(count))
    lib.MatmulPreferenceDestroy(pref)
    candidates = [results[i] for i in range(count.value) if results[i].state == 0]
    if not candidates:
        raise RuntimeError(f"cuBLASLt has no algorithm for {key}")
    return _Plan(desc, tuple(layouts), candidates)


def _pointers(desc: ctypes.c_void_p, ptrs: dict) -> None:
    if "bias" in ptrs:
        _set(_lib.MatmulDescSetAttribute, desc, _DESC_BIAS_POINTER, ctypes.c_void_p(ptrs["bias"]))
    if "aux" in ptrs:
        _set(_lib.MatmulDescSetAttribute, desc, _DESC_AUX_POINTER, ctypes.c_void_p(ptrs["aux"]))


_ONE, _ZERO = ctypes.c_float(1.0), ctypes.c_float(0.0)


def _launch(plan: _Plan, algo: _Heuristic, device: int, w: Tensor, x: Tensor, out: Tensor) -> None:
    a, b, d = plan.layouts
    stream = torch.cuda.current_stream(device).cuda_stream
    _lib.Matmul(_handles[device], plan.desc, ctypes.byref(_ONE), w.data_ptr(), a, x.data_ptr(), b,
                ctypes.byref(_ZERO), out.data_ptr(), d, out.data_ptr(), d, ctypes.byref(algo.algo),
                _workspaces[device].data_ptr(), _WORKSPACE, stream)


def _time(plan, algo, device, w, x, out, rounds: int = 5, calls: int = 4) -> float:
    """Median ms per launch over ``rounds`` of ``calls`` back-to-back launches (one launch per timed
    round would add the ``ctypes`` dispatch, the same for every candidate, to each)."""
    for _ in range(2):
        _launch(plan, algo, device, w, x, out)
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            _launch(plan, algo, device, w, x, out)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return statistics.median(times)


def _pick(key: tuple, plan: _Plan, device: int, w: Tensor, x: Tensor, out: Tensor) -> _Heuristic:
    """The heuristic's first candidate, or the fastest one when it beats the first by more than 1 %."""
    if not autotune or len(plan.candidates) == 1 or torch.cuda.is_current_stream_capturing():
        return plan.candidates[0]
    ms = [_time(plan, c, device, w, x, out) for c in plan.candidates]
    best = min(range(len(ms)), key=ms.__getitem__)
    pick = best if ms[best] < 0.99 * ms[0] else 0
    choices[key] = {"candidates": len(ms), "picked": pick, "ms": ms[pick], "heuristic_ms": ms[0]}
    return plan.candidates[pick]


def reset() -> None:
    """Forget every plan and measured choice (benchmarks compare the heuristic's pick with the tuned one)."""
    with _lock:
        for plan in _plans.values():
            _lib.MatmulDescDestroy(plan.desc)
            for layout in plan.layouts:
                _lib.MatrixLayoutDestroy(layout)
        _plans.clear()
        choices.clear()


def gemm(x: Tensor, w: Tensor, *, w_is_nk: bool = True, epilogue: str = "default", bias: Tensor | None = None,
         aux: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """out (M, N) = epilogue(x (M, K) @ W.T) for W (N, K) (``w_is_nk``), or of x @ W for W (K, N).

    ``bias`` (N,) is read (bias epilogues) or written (``dgelu_bgrad``: the column sums of out);
    ``aux`` (M, N) is written (``gelu_aux_bias``: the pre-activation) or read (``dgelu``, ``dgelu_bgrad``).
    """
    m, k = x.shape
    n = w.shape[0] if w_is_nk else w.shape[1]
    device = x.device.index
    out = torch.empty(m, n, dtype=x.dtype, device=x.device) if out is None else out
    ptrs = {name: t.data_ptr() for name, t in (("bias", bias), ("aux", aux)) if t is not None}
    key = (m, n, k, w_is_nk, epilogue, x.dtype, device)
    with _lock:
        plan = _plans.get(key)
        if plan is None:
            with torch.cuda.device(device):
                _handle(device)
                plan = _plans[key] = _plan(key, m, n, k, w_is_nk, epilogue, x.dtype, device, ptrs)
        _pointers(plan.desc, ptrs)
        if plan.algo is None:
            plan.algo = _pick(key, plan, device, w, x, out)
        _launch(plan, plan.algo, device, w, x, out)
    return out


# ---- custom ops: what models call (opaque to torch.compile) ----

@torch.library.custom_op("hddm::linear_gelu", mutates_args=())
def linear_gelu(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """GELU(x @ weight.T + bias) in one matmul (x (M, K), weight (N, K)): a sampling MLP's fc1."""
    if sm90_gemm.runnable("gelu_bias", x, weight, bias):
        return sm90_gemm.gemm(x, weight, epilogue="gelu_bias", bias=bias)
    if not _runnable(x, weight, bias):
        return torch._addmm_activation(bias, x, weight.t(), use_gelu=True)
    return gemm(x, weight, epilogue="gelu_bias", bias=bias)


@linear_gelu.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("hddm::linear_bias", mutates_args=())
def linear_bias(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """x @ weight.T + bias in one matmul with the tuned algorithm."""
    if sm90_gemm.plain and sm90_gemm.runnable("bias", x, weight, bias):
        return sm90_gemm.gemm(x, weight, epilogue="bias", bias=bias)
    if not _runnable(x, weight, bias):
        return torch.addmm(bias, x, weight.t())
    return gemm(x, weight, epilogue="bias", bias=bias)


@linear_bias.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("hddm::linear_gelu_aux", mutates_args=())
def linear_gelu_aux(x: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """(GELU(pre), pre) with pre = x @ weight.T + bias, both from one matmul: fc1 in training."""
    if not _runnable(x, weight, bias):
        pre = torch.addmm(bias, x, weight.t())
        return torch.nn.functional.gelu(pre, approximate="tanh"), pre
    pre = x.new_empty(x.shape[0], weight.shape[0])
    if sm90_gemm.runnable("gelu_aux_bias", x, weight, bias):
        return sm90_gemm.gemm(x, weight, epilogue="gelu_aux_bias", bias=bias, aux=pre), pre
    return gemm(x, weight, epilogue="gelu_aux_bias", bias=bias, aux=pre), pre


@linear_gelu_aux.register_fake
def _(x, weight, bias):
    return x.new_empty(x.shape[0], weight.shape[0]), x.new_empty(x.shape[0], weight.shape[0])


@torch.library.custom_op("hddm::matmul_dgelu", mutates_args=())
def matmul_dgelu(grad: Tensor, weight: Tensor, pre: Tensor) -> Tensor:
    """(grad @ weight) · GELU'(pre): grad (M, N2) of fc2's output, weight fc2's (N2, N1), pre fc1's
    pre-activation (M, N1); gives fc1's pre-activation gradient."""
    if sm90_gemm.runnable("dgelu", grad, weight, pre):
        return sm90_gemm.gemm(grad, weight, epilogue="dgelu", aux=pre)
    if not _runnable(grad, weight, pre):
        return torch.ops.aten.gelu_backward(grad @ weight, pre, approximate="tanh")
    return gemm(grad, weight, w_is_nk=False, epilogue="dgelu", aux=pre)


@matmul_dgelu.register_fake
def _(grad, weight, pre):
    return grad.new_empty(grad.shape[0], weight.shape[1])


@torch.library.custom_op("hddm::matmul_dgelu_bgrad", mutates_args=())
def matmul_dgelu_bgrad(grad: Tensor, weight: Tensor, pre: Tensor) -> tuple[Tensor, Tensor]:
    """(g, g.sum(0)) with g = ``matmul_dgelu(grad, weight, pre)``, the bias gradient summed in the epilogue
    (on an H200 this epilogue ran 2× slower than the matmul and a separate sum: 2026-12-01 run 8)."""
    if not _runnable(grad, weight, pre):
        g = torch.ops.aten.gelu_backward(grad @ weight, pre, approximate="tanh")
        return g, g.sum(0)
    bgrad = grad.new_empty(weight.shape[1])
    return gemm(grad, weight, w_is_nk=False, epilogue="dgelu_bgrad", bias=bgrad, aux=pre), bgrad


@matmul_dgelu_bgrad.register_fake
def _(grad, weight, pre):
    return grad.new_empty(grad.shape[0], weight.shape[1]), grad.new_empty(weight.shape[1])
