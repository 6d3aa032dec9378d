"""The demo's parallel expert training: a worker's error reaches the caller as the project's own exception."""

from __future__ import annotations

import pytest

from hddm_p2p.errors import HddmError
from hddm_p2p.pipeline.demo import DemoConfig, train_experts


def test_a_failing_worker_raises_its_error(world, tmp_path):
    cfg = DemoConfig.fast(tmp_path / "out")
    assert cfg.workers == 2
    work = tmp_path / "work"  # no clusters/assignments.json here: every job fails in its worker
    with pytest.raises(HddmError, match="assignments"):
        train_experts(world.digits, work, cfg)
