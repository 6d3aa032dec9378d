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
