"""Experts that load their weights on first use, and optionally wait on the CPU between uses."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import torch


class LazyExpert:
    """A callable expert whose weights are read from disk the first time a sample is routed to it.

    ``loader(path, device, dtype) -> module`` does the reading (memory-mapped safetensors), so an expert
    no sample picks is never read. With ``offload=True`` the module lives on the CPU and moves to
    ``device`` only for the duration of a call (``moves`` counts those transfers). ``calls`` counts
    invocations and ``rows`` the samples they carried. With ``dtype`` (e.g. bf16) inputs are cast to it and
    the output is returned as float32. With ``compile=True`` the module's blocks are compiled once loaded
    (``hddm_p2p.models.compile``: experts of one architecture share the compiled graph). ``prefetch()``
    starts the load on a background thread, so that the experts one step routes to are read from disk
    side by side (the ensemble calls it for every expert it is about to run); a failed prefetch leaves the
    expert unloaded and the error is raised by the call that needs it.
    """

    def __init__(self, path: Path, loader: Callable, device: str | torch.device = "cpu",
                 dtype: torch.dtype | None = None, offload: bool = False, compile: bool = False):
        self.path, self.loader = Path(path), loader
        self.device, self.dtype, self.offload, self.compile = torch.device(device), dtype, offload, compile
        self.module: torch.nn.Module | None = None
        self.loads = 0
        self.moves = 0
        self.calls = 0
        self.rows = 0
        self._lock = threading.Lock()
        self._prefetch: threading.Thread | None = None

    @property
    def loaded(self) -> bool:
        return self.module is not None

    def prefetch(self) -> None:
        """Start loading now, on a background thread, unless loaded or loading already."""
        if self.module is None and self._prefetch is None:
            def load():
                try:
                    self._ensure()
                except Exception:  # noqa: BLE001 - the call that needs the expert loads again and raises
                    pass

            self._prefetch = threading.Thread(target=load, name=f"load {self.path.name}", daemon=True)
            self._prefetch.start()

    def _ensure(self) -> torch.nn.Module:
        with self._lock:
            if self.module is None:
                home = torch.device("cpu") if self.offload else self.device
                module = self.loader(self.path, home, self.dtype).eval()
                if self.compile:
                    from hddm_p2p.models.compile import compile_blocks

                    compile_blocks(module)
                self.module = module
                self.loads += 1
        return self.module

    def _cast(self, x: torch.Tensor, t: torch.Tensor, cond):
        if self.dtype is None:
            return x, t, cond
        if isinstance(cond, dict):
            cond = {k: v.to(self.dtype) if v.is_floating_point() else v for k, v in cond.items()}
        return x.to(self.dtype), t.to(self.dtype), cond

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond=None) -> torch.Tensor:
        module = self._ensure()
        self.calls += 1
        self.rows += x.shape[0]
        x, t, cond = self._cast(x, t, cond)
        if not self.offload or self.device.type == "cpu":
            return module(x, t, cond).float()
        module.to(self.device, non_blocking=True)
        self.moves += 1
        try:
            return module(x.to(self.device), t.to(self.device), cond).float()
        finally:
            module.to("cpu")
