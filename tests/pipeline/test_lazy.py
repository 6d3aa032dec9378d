"""LazyExpert: weights read on the first routed call, offload moves counted, dtype casting."""

from __future__ import annotations

import torch

from hddm_p2p.models.loading import load_weights
from hddm_p2p.pipeline.lazy import LazyExpert


class _RecordingNet(torch.nn.Module):
    """A real module that records where ``.to`` sends it (stands in for an accelerator this CPU lacks)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)
        self.moved_to: list[str] = []

    def to(self, device, *args, **kwargs):
        self.moved_to.append(str(device))
        return self

    def forward(self, x, t, cond=None):
        return x * 2


def test_loads_on_first_call_only(world):
    calls = []

    def loader(path, device, dtype):
        calls.append((path, str(device), dtype))
        return load_weights(path, device, dtype)

    e = LazyExpert(world.dirs[0] / "model.safetensors", loader)
    assert not e.loaded and calls == []  # constructing reads nothing
    x = torch.randn(2, 3, 8, 8)
    e(x, torch.ones(2))
    e(x, torch.ones(2))
    assert e.loaded and e.loads == 1 and len(calls) == 1 and e.calls == 2 and e.rows == 4


def test_offload_moves_for_each_call_and_back():
    net = _RecordingNet()
    e = LazyExpert("unused", lambda p, d, t: net, device="meta", offload=True)  # a non-CPU device that exists here
    e(torch.ones(3, 1), torch.ones(3))
    e(torch.ones(3, 1), torch.ones(3))
    assert e.moves == 2 and net.moved_to == ["meta", "cpu", "meta", "cpu"]
    resident = LazyExpert("unused", lambda p, d, t: _RecordingNet(), device="meta", offload=False)
    resident(torch.ones(1, 1), torch.ones(1))
    assert resident.moves == 0


def test_bf16_expert_returns_float32(world):
    e = LazyExpert(world.dirs[1] / "model.safetensors", load_weights, dtype=torch.bfloat16)
    out = e(torch.randn(2, 3, 8, 8), torch.full((2,), 500.0))
    assert out.dtype == torch.float32 and next(e.module.parameters()).dtype == torch.bfloat16


def test_prefetch_loads_in_the_background_once(world):
    import threading

    started, release = threading.Event(), threading.Event()
    calls = []

    def slow_loader(path, device, dtype):
        calls.append(path)
        started.set()
        release.wait(10)
        return load_weights(path, device, dtype)

    e = LazyExpert(world.dirs[0] / "model.safetensors", slow_loader)
    e.prefetch()
    assert started.wait(10) and not e.loaded  # loading, not yet loaded: prefetch did not block
    e.prefetch()  # a second prefetch starts nothing new
    release.set()
    e(torch.randn(2, 3, 8, 8), torch.ones(2))  # waits for the background load instead of loading again
    assert e.loads == 1 and len(calls) == 1


def test_failed_prefetch_raises_at_the_call(world, tmp_path):
    import pytest

    from hddm_p2p.errors import HddmError

    missing = LazyExpert(tmp_path / "gone.safetensors", load_weights)
    missing.prefetch()
    missing._prefetch.join(10)
    assert not missing.loaded
    with pytest.raises((HddmError, OSError)):
        missing(torch.randn(1, 3, 8, 8), torch.ones(1))


def test_ensemble_prefetches_only_routed_experts(world):
    from hddm_p2p.diffusion import Ensemble, ExpertSpec

    experts = [LazyExpert(d / "model.safetensors", load_weights) for d in world.dirs[:3]]
    spec = ExpertSpec("velocity", "flow-linear")
    router = lambda x, t: torch.tensor([[5.0, -5.0, 4.0]]).expand(x.shape[0], -1)  # noqa: E731
    Ensemble([(e, spec) for e in experts], router, mode="top-k", k=2).velocity(torch.randn(2, 3, 8, 8), 0.5)
    assert [e.loads for e in experts] == [1, 0, 1] and experts[1]._prefetch is None
