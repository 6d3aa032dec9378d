"""Hopper GEMMs with fused epilogues, from CUTLASS templates compiled on first use.

cuBLASLt runs the epilogues a DiT MLP needs (fc1 + bias + GELU; the same keeping the pre-activation; the
backward's GELU') noticeably slower than its plain GEMM of the same shape: on an H200 the XL/2 fc1 with
GELU took 0.569 ms against 0.455 ms plain (docs/benchmarks.md, 2026-12-01 run 7). ``csrc/sm90_gemm.cu``
instantiates CUTLASS 3's warp-specialized persistent kernels (TMA loads, wgmma, the epilogue's tanh as
``tanh.approx.f32``) for those epilogues and a few tile shapes; this module builds it with ``nvcc`` into
one shared library (cached, keyed by the source, the flags and the compiler), loads it with ``ctypes``
and, per GEMM shape, times every tile shape once on the real operands and keeps the fastest.

Nothing here runs unless ``available()``: a CUDA device of compute capability 9.0, ``nvcc`` (``$CUDACXX``,
``PATH`` or ``/usr/local/cuda``) and CUTLASS's headers (the ``nvidia-cutlass`` package, or
``$HDDM_CUTLASS_DIR``), or a prebuilt library named by ``$HDDM_SM90_GEMM_LIB``. ``cublaslt``'s custom ops
call ``gemm`` when ``runnable`` says so and take their cuBLASLt or PyTorch path otherwise.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

Tensor = torch.Tensor

enabled: bool = True  # False: every caller takes its cuBLASLt / PyTorch path
plain: bool = False  # with ``enabled``: sampling's qkv, proj and fc2 (bias epilogue) through here too
# Sampling: each block's gated residual added inside the proj / fc2 GEMMs' epilogue (``linear_gated_residual``;
# ``DiT`` then chains the blocks through ``DiTBlock.forward_fused_residual``). "auto": where that kernel runs (an
# sm_90 GPU, the library built with it); True: always (elsewhere the op's PyTorch sum stands in); False: never.
residual: bool | str = "auto"
EPILOGUES = {"bias": 0, "gelu_bias": 1, "gelu_aux_bias": 2, "dgelu": 3, "gated_residual": 4}


@dataclass(frozen=True)
class Tile:
    """One tile config: CTA tile (m, n) with K tile 64, a cluster of (cluster_m, cluster_n) CTAs, and CUTLASS's
    kernel schedule ("Pingpong" or "Cooperative"); compiled into its own translation unit through ``defines``."""
    m: int
    n: int
    cluster_m: int
    cluster_n: int
    schedule: str

    def defines(self) -> list[str]:
        return [f"-DHDDM_TILE_M={self.m}", f"-DHDDM_TILE_N={self.n}", f"-DHDDM_CLUSTER_M={self.cluster_m}",
                f"-DHDDM_CLUSTER_N={self.cluster_n}", f"-DHDDM_SCHEDULE={self.schedule}"]

    def __str__(self) -> str:
        return f"{self.schedule.lower()} {self.m}x{self.n}x64, cluster {self.cluster_m}x{self.cluster_n}"


# CUTLASS's (M, N) is (output features, tokens): the product runs transposed, bias along M.
CONFIGS = {
    0: Tile(128, 128, 2, 1, "Pingpong"),
    1: Tile(128, 256, 2, 1, "Cooperative"),
    2: Tile(256, 128, 1, 2, "Cooperative"),
    3: Tile(64, 256, 1, 2, "Pingpong"),
    4: Tile(128, 128, 1, 2, "Pingpong"),
    5: Tile(256, 128, 2, 1, "Cooperative"),
}
SOURCE = Path(__file__).parent / "csrc" / "sm90_gemm.cu"
FLAGS = ("-std=c++17", "-O3", "-DNDEBUG", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC",
         "-gencode=arch=compute_90a,code=sm_90a")
choices: dict[tuple, dict] = {}  # (epilogue, m, n, k, device, batch) → {"config", "ms", "all_ms", "workspace"}


class _Args(ctypes.Structure):
    _fields_ = [("m", ctypes.c_int64), ("n", ctypes.c_int64), ("k", ctypes.c_int64),
                ("x", ctypes.c_void_p), ("w", ctypes.c_void_p), ("bias", ctypes.c_void_p),
                ("y", ctypes.c_void_p), ("aux", ctypes.c_void_p), ("workspace", ctypes.c_void_p),
                ("workspace_bytes", ctypes.c_int64), ("stream", ctypes.c_void_p), ("sm_count", ctypes.c_int),
                ("batch", ctypes.c_int64), ("gate", ctypes.c_void_p), ("gate_stride", ctypes.c_int64),
                ("residual", ctypes.c_void_p)]


class BuildError(RuntimeError):
    """The CUDA source did not compile or link; the message has the compiler's last lines."""


# ---- building ----

def find_nvcc() -> str | None:
    for cand in (os.environ.get("CUDACXX"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if cand and Path(cand).is_file():
            return cand
    return None


def cutlass_include() -> list[Path] | None:
    """CUTLASS's ``include`` and ``tools/util/include``: ``$HDDM_CUTLASS_DIR`` or the ``nvidia-cutlass`` package."""
    root = os.environ.get("HDDM_CUTLASS_DIR")
    if not root:
        try:
            import cutlass_library
        except ImportError:
            return None
        root = str(Path(cutlass_library.__file__).parent / "source")
    dirs = [Path(root) / "include", Path(root) / "tools" / "util" / "include"]
    return dirs if (dirs[0] / "cutlass" / "cutlass.h").is_file() else None


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hddm-p2p" / "kernels"


def _compiler_id(nvcc: str) -> str:
    return subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout


def library_path(nvcc: str, includes: list[Path], extra: tuple[str, ...] = ()) -> Path:
    """Where the build for this source, compiler, headers, flags and tile configs is cached."""
    h = hashlib.sha256(SOURCE.read_bytes())
    for part in (_compiler_id(nvcc), *map(str, includes), *FLAGS, *extra, repr(CONFIGS)):
        h.update(part.encode() + b"\0")
    version = (includes[0] / "cutlass" / "version.h")
    if version.is_file():
        h.update(version.read_bytes())
    return cache_dir() / f"sm90_gemm-{h.hexdigest()[:16]}.so"


def compile_commands(nvcc: str, includes: list[Path], workdir: Path, extra: tuple[str, ...] = ()) -> list[list[str]]:
    """One ``nvcc -c`` per (epilogue, config) translation unit."""
    inc = [f"-I{d}" for d in includes]
    return [[nvcc, *FLAGS, *extra, *inc, f"-DHDDM_EPI={e}", f"-DHDDM_CFG={c}", *tile.defines(), "-c", str(SOURCE),
             "-o", str(workdir / f"e{e}c{c}.o")] for e in EPILOGUES.values() for c, tile in CONFIGS.items()]


def build(nvcc: str | None = None, includes: list[Path] | None = None, extra: tuple[str, ...] = (),
          jobs: int | None = None, out: Path | None = None) -> Path:
    """Compile every translation unit (in parallel) and link one shared library; returns its path.

    Translation units that fail to compile are left out (their configs are then missing); when none
    compiles, ``BuildError``. The library appears at ``out`` (default: the cache) only once complete.
    """
    nvcc = nvcc or find_nvcc()
    includes = includes or cutlass_include()
    if nvcc is None or includes is None:
        raise BuildError("nvcc or CUTLASS's headers not found: set CUDACXX and HDDM_CUTLASS_DIR, "
                         "or pip install nvidia-cutlass")
    out = out or library_path(nvcc, includes, extra)
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger(__name__).warning("building the Hopper GEMM kernels once (a minute or more) into %s", out)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        work = Path(tmp)
        cmds = compile_commands(nvcc, includes, work, extra)
        with ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
            results = list(pool.map(lambda c: subprocess.run(c, capture_output=True, text=True), cmds))
        objs = [c[-1] for c, r in zip(cmds, results) if r.returncode == 0]
        if not objs:
            err = next(r.stderr for r in results if r.returncode)
            raise BuildError("sm90_gemm.cu did not compile: " + " | ".join(err.strip().splitlines()[-3:]))
        part = work / "lib.so"
        libdirs = [f"-L{d}" for d in (Path(nvcc).resolve().parent.parent / n for n in ("lib", "lib64")) if d.is_dir()]
        link = subprocess.run([nvcc, "-shared", "-cudart", "static", *libdirs, *objs, "-o", str(part)],
                              capture_output=True, text=True)
        if link.returncode:
            raise BuildError("sm90_gemm link failed: " + " | ".join(link.stderr.strip().splitlines()[-3:]))
        os.replace(part, out)  # atomic: a reader sees the whole library or none
    return out


# ---- loading ----

_lock = threading.Lock()
_state: dict = {}  # "lib": ctypes.CDLL | None, "fns": {(epi, cfg): fn}, "error": str
_workspaces: dict[int, Tensor] = {}


def _load() -> dict | None:
    if "fns" in _state:
        return _state if _state["fns"] else None
    fns, queries = {}, {}
    try:
        path = os.environ.get("HDDM_SM90_GEMM_LIB") or str(build())
        lib = ctypes.CDLL(path)
        for e in EPILOGUES.values():
            for c in CONFIGS:
                fn = getattr(lib, f"hddm_sm90_epi{e}_cfg{c}", None)
                ws = getattr(lib, f"hddm_sm90_epi{e}_cfg{c}_workspace", None)
                if fn is not None and ws is not None:
                    fn.argtypes, fn.restype = [ctypes.POINTER(_Args)], ctypes.c_int
                    ws.argtypes, ws.restype = [ctypes.POINTER(_Args)], ctypes.c_int64
                    fns[e, c], queries[e, c] = fn, ws
        _state.update(lib=lib, path=path, ws=queries)
    except (OSError, BuildError, subprocess.SubprocessError) as exc:
        _state["error"] = str(exc)
    _state["fns"] = fns
    _state["epilogues"] = {e for e, _ in fns}
    return _state if fns else None


def available() -> bool:
    """``enabled``, a compute-capability-9.0 GPU, and the library built (or found) and loaded."""
    if not enabled or not torch.cuda.is_available() or torch.cuda.get_device_capability() != (9, 0):
        return False
    with _lock:
        return _load() is not None


def has(epilogue: str) -> bool:
    """Whether the loaded library holds at least one kernel for this epilogue."""
    return EPILOGUES[epilogue] in _state.get("epilogues", ())


@torch.compiler.assume_constant_result  # read once while torch.compile traces the model: no graph break
def residual_chain(device: torch.device) -> bool:
    """Whether sampling on ``device`` chains the blocks through the gated-residual epilogue (``residual``)."""
    if residual == "auto":
        return device.type == "cuda" and available() and has("gated_residual")
    return bool(residual)


def runnable(epilogue: str, *tensors: Tensor) -> bool:
    """Whether a call with this epilogue on these operands may take this path: ``available`` with a kernel for
    the epilogue (a library built from an older source may lack one), all bf16 on one CUDA device, contiguous,
    16-byte aligned, each row a multiple of 8 elements (what the kernels' TMA loads need; every GEMM
    dimension but the token count is some operand's row length)."""
    t0 = tensors[0]
    return (enabled and t0.is_cuda and t0.dtype == torch.bfloat16
            and all(t.dtype == t0.dtype and t.device == t0.device and t.is_contiguous() and t.data_ptr() % 16 == 0
                    and t.shape[-1] % 8 == 0 for t in tensors) and available() and has(epilogue))


def _launch(fn, args: _Args) -> None:
    status = fn(ctypes.byref(args))
    if status:
        raise RuntimeError(f"sm90 GEMM refused (m={args.m}, n={args.n}, k={args.k}): status {status}")


def _time(fn, args: _Args, rounds: int = 5, calls: int = 4) -> float:
    for _ in range(2):
        _launch(fn, args)
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            _launch(fn, args)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return statistics.median(times)


def _pick(key: tuple, args: _Args) -> tuple[int, int]:
    """(config, workspace bytes) for this shape: the fastest config, timed once on the real operands. While a
    CUDA graph is being captured nothing can be timed: an untimed shape then takes the epilogue's first config."""
    if key in choices:
        return choices[key]["config"], choices[key]["workspace"]
    epi, where = EPILOGUES[key[0]], torch.device("cuda", key[4])
    fns = {c: f for (e, c), f in _state["fns"].items() if e == epi}
    needs = {c: _state["ws"][epi, c](ctypes.byref(args)) for c in fns}
    if torch.cuda.is_current_stream_capturing():
        first = next(iter(fns))
        return first, needs[first]
    ms = {}
    for c, f in fns.items():
        _workspace(args, where, needs[c])
        if f(ctypes.byref(args)) == 0:  # 1: the config cannot implement the shape
            ms[c] = _time(f, args)
    if not ms:
        raise RuntimeError(f"no sm90 GEMM config runs {key}")
    best = min(ms, key=ms.get)
    choices[key] = {"config": best, "ms": ms[best], "all_ms": ms, "workspace": needs[best]}
    return best, needs[best]


def gemm(x: Tensor, w: Tensor, *, epilogue: str, bias: Tensor | None = None, aux: Tensor | None = None,
         gate: Tensor | None = None, residual: Tensor | None = None, out: Tensor | None = None) -> Tensor:
    """out (M, N) = epilogue(x (M, K) @ W.T) with W (N, K); for ``dgelu``, (x @ W) · GELU'(aux) with W (K, N).

    ``bias`` (N,) is added before the activation; ``aux`` (M, N) is written (``gelu_aux_bias``: the
    pre-activation) or read (``dgelu``). ``gated_residual``: residual + gate ⊙ (x Wᵀ) + bias with ``gate``
    (B, N) one row per sample (rows may be strided), ``bias`` (B, N) the gated bias, ``residual`` (M, N); M
    must be a multiple of B. Operands must pass ``runnable``.
    """
    m, k = x.shape
    n = w.shape[1] if epilogue == "dgelu" else w.shape[0]
    device = x.device.index
    out = torch.empty(m, n, dtype=x.dtype, device=x.device) if out is None else out
    batch = gate.shape[0] if gate is not None else 1
    args = _Args(m, n, k, x.data_ptr(), w.data_ptr(), bias.data_ptr() if bias is not None else None,
                 out.data_ptr(), aux.data_ptr() if aux is not None else None, None, 0,
                 torch.cuda.current_stream(x.device).cuda_stream, 0, batch,
                 gate.data_ptr() if gate is not None else None, gate.stride(0) if gate is not None else 0,
                 residual.data_ptr() if residual is not None else None)
    key = (epilogue, m, n, k, device, batch)
    # the kernels launch in the calling thread's current CUDA context: make it the operands' device
    with _lock, torch.cuda.device(x.device):
        cfg, need = _pick(key, args)
        _workspace(args, x.device, need)
        _launch(_state["fns"][EPILOGUES[epilogue], cfg], args)
    return out


def _workspace(args: _Args, where: torch.device, need: int) -> None:
    """Point ``args`` at this device's workspace, grown to ``need`` bytes. The persistent kernels here need
    none; a buffer allocated while a CUDA graph is captured would land in the graph's private pool, so
    growing one then is refused."""
    have = _workspaces.get(where.index)
    if need > (0 if have is None else have.numel()):
        if torch.cuda.is_current_stream_capturing():
            raise RuntimeError("sm90 GEMM needs a workspace: run the shape once before capturing a CUDA graph")
        have = _workspaces[where.index] = torch.empty(need, dtype=torch.uint8, device=where)
    if have is not None:
        args.workspace, args.workspace_bytes = have.data_ptr(), have.numel()


# ---- the gated residual, as a custom op (opaque to torch.compile) ----

def gate_ok(gate: Tensor, batch_rows: int) -> bool:
    """A (B, N) gate the epilogue can read: unit column stride, 16-byte aligned rows, B dividing the rows."""
    return (gate.dim() == 2 and gate.stride(1) == 1 and gate.stride(0) % 8 == 0 and gate.data_ptr() % 16 == 0
            and batch_rows % gate.shape[0] == 0)


@torch.library.custom_op("hddm::linear_gated_residual", mutates_args=())
def linear_gated_residual(x: Tensor, weight: Tensor, bias: Tensor, gate: Tensor, residual: Tensor) -> Tensor:
    """residual + gate ⊙ (x @ weight.T + bias), rows of x and residual grouped by sample: x (B·T, K),
    weight (N, K), bias (N,), gate (B, N), residual (B·T, N). One GEMM whose epilogue adds the residual on an
    sm_90 GPU (``gated_residual``); the same sum in plain PyTorch elsewhere."""
    b, n = gate.shape
    if (runnable("gated_residual", x, weight, bias, residual) and gate.dtype == x.dtype
            and gate_ok(gate, x.shape[0])):
        gated_bias = (gate * bias).contiguous()
        return gemm(x, weight, epilogue="gated_residual", bias=gated_bias, gate=gate, residual=residual)
    branch = torch.nn.functional.linear(x, weight, bias).view(b, -1, n)
    return (residual.view(b, -1, n) + gate[:, None] * branch).view(-1, n)


@linear_gated_residual.register_fake
def _(x, weight, bias, gate, residual):
    return residual.new_empty(residual.shape)
