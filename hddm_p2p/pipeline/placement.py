"""Expert-parallel generation: place the experts of an ensemble across the devices of one host.

When the experts together do not fit one GPU, each expert gets its own device (greedy bin-packing by
parameter bytes), and the unchanged ``Ensemble`` routes sub-batches to it through a ``PlacedExpert``:

    sampling device ──x, t, cond──▶ expert's device ──velocity──▶ sampling device (gathered by Ensemble)

The router, the noise, the ODE solver and the weighted sum stay on the sampling device, so the images are
those of a single-device run for the same seed (up to float differences between devices).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from hddm_p2p.errors import SpecError
from hddm_p2p.pipeline.lazy import LazyExpert

_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def parameter_bytes(weights: Path, dtype: torch.dtype | None = None) -> int:
    """Bytes of the tensors in a safetensors file (read from its header only), at ``dtype`` if given."""
    with open(weights, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in t["shape"]:
            count *= d
        size = torch.empty((), dtype=dtype).element_size() if dtype is not None and t["dtype"] in ("F32", "F16", "BF16") \
            else _DTYPE_BYTES.get(t["dtype"], 4)
        total += count * size
    return total


@dataclass(frozen=True)
class Placement:
    """``devices[i]`` is where expert i runs; ``loads[d]`` the parameter bytes placed on device d."""

    devices: tuple[str, ...]
    loads: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"experts": list(self.devices), "bytes_per_device": dict(self.loads)}


def plan_placement(sizes: Sequence[int], devices: Sequence[str],
                   capacity: dict[str, int] | None = None) -> Placement:
    """Greedy bin-packing (largest expert first, onto the least-loaded device where it still fits).

    ``sizes[i]``: bytes of expert i; ``capacity[d]``: bytes device d may hold (absent = unbounded).
    Raises SpecError when some expert fits on no device.
    """
    if not devices:
        raise SpecError("expert-parallel generation needs at least one device; pass --devices cuda:0,cuda:1")
    capacity = capacity or {}
    loads = {d: 0 for d in devices}
    out: list[str | None] = [None] * len(sizes)
    for i in sorted(range(len(sizes)), key=lambda j: (-sizes[j], j)):
        fits = [d for d in loads if loads[d] + sizes[i] <= capacity.get(d, float("inf"))]
        if not fits:
            free = ", ".join(f"{d}: {(capacity.get(d, 0) - loads[d]) / 2**20:.0f} MiB free" for d in loads)
            raise SpecError(f"expert {i} ({sizes[i] / 2**20:.0f} MiB) fits on none of the devices ({free}); "
                            "add devices, use --dtype bf16, or --offload")
        best = min(fits, key=lambda d: (loads[d], list(loads).index(d)))
        loads[best] += sizes[i]
        out[i] = best
    return Placement(tuple(out), loads)  # type: ignore[arg-type]


def device_capacity(devices: Sequence[str], headroom: float = 0.8) -> dict[str, int]:
    """Bytes each CUDA device may hold for weights (``headroom`` of its memory); CPUs are unbounded."""
    caps = {}
    for d in devices:
        dev = torch.device(d)
        if dev.type == "cuda":
            caps[d] = int(torch.cuda.get_device_properties(dev).total_memory * headroom)
    return caps


def parse_devices(spec: str | None, expert_parallel: bool = False) -> tuple[str, ...] | None:
    """``"cuda:0,cuda:1"`` → ("cuda:0", "cuda:1"); ``expert_parallel`` alone → every visible GPU."""
    if spec:
        devices = tuple(s.strip() for s in spec.split(",") if s.strip())
        for d in devices:
            try:
                dev = torch.device(d)
            except RuntimeError:
                raise SpecError(f"--devices: {d!r} is not a device; write e.g. cuda:0,cuda:1") from None
            if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
                raise SpecError(f"--devices: {d} is not available here "
                                f"({torch.cuda.device_count()} CUDA devices visible)")
        return devices
    if expert_parallel:
        if not torch.cuda.is_available():
            raise SpecError("--expert-parallel needs CUDA devices; none are visible (pass --devices to name them)")
        return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
    return None


def _move(cond, device: torch.device):
    if isinstance(cond, torch.Tensor):
        return cond.to(device)
    if isinstance(cond, dict):
        return {k: _move(v, device) for k, v in cond.items()}
    return cond


class PlacedExpert:
    """An expert callable running on its own device: inputs go there, the output comes back to ``home``.

    ``sends``/``gathers`` count the sub-batches moved out and back (both counted even when the two
    devices are the same, so the path is exercised on a CPU-only machine).
    """

    def __init__(self, expert: LazyExpert, home: str | torch.device):
        self.expert, self.home = expert, torch.device(home)
        self.sends = self.gathers = 0

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        dev = self.expert.device
        self.sends += 1
        out = self.expert(x.to(dev), t.to(dev), _move(cond, dev))
        self.gathers += 1
        return out.to(self.home)


def place_experts(experts: Sequence[LazyExpert], devices: Sequence[str], home: str,
                  capacity: dict[str, int] | None = None) -> tuple[list[PlacedExpert], Placement]:
    """Plan by parameter bytes, point each (not yet loaded) LazyExpert at its device, and wrap it."""
    if any(e.loaded for e in experts):
        raise SpecError("experts must be placed before they load")
    if any(e.offload for e in experts):
        raise SpecError("--offload and --devices do not combine: offload keeps experts on the CPU; choose one")
    sizes = [parameter_bytes(e.path, e.dtype) for e in experts]
    plan = plan_placement(sizes, devices, device_capacity(devices) if capacity is None else capacity)
    for e, d in zip(experts, plan.devices):
        e.device = torch.device(d)
    return [PlacedExpert(e, home) for e in experts], plan
