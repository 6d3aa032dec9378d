import json

import pytest
import torch

from hddm_p2p.errors import DataError, SpecError
from hddm_p2p.models import build_dit
from hddm_p2p.train.data import EpochBatches, MemorySource
from hddm_p2p.train.loop import CHECKPOINT, TrainConfig, Trainer
from hddm_p2p.train.objectives import ObjectiveConfig


def _trainer(data, out, steps, seed=0, condition="class"):
    torch.manual_seed(seed)
    model = build_dit("tiny", input_size=32, in_channels=3, condition=condition, num_classes=10)
    cfg = TrainConfig(steps=steps, batch_size=8, lr=1e-3, warmup_steps=2, ckpt_every=3, log_every=1, seed=seed,
                      ema_decay=0.99)
    obj = ObjectiveConfig("fm", "flow-linear", time_sampling="logit-normal", cond_dropout=0.3)
    return Trainer(model, MemorySource(data, 8, seed), obj, cfg, out, cond_fn=lambda batch: batch.labels)


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_resume_after_kill_equals_uninterrupted_run(cifar_small, tmp_path):
    # 6 steps with batch 8 over 64 images: crosses no epoch; use limit so step 6 re-shuffles too
    full = _trainer(cifar_small, tmp_path / "full", steps=6)
    full.run()
    first = _trainer(cifar_small, tmp_path / "split", steps=3)  # "killed" right after the step-3 checkpoint
    first.run()
    assert (tmp_path / "split" / CHECKPOINT).exists()
    resumed = _trainer(cifar_small, tmp_path / "split", steps=6, seed=0)
    torch.manual_seed(12345)  # a different global RNG state must not matter
    assert resumed.load_checkpoint() and resumed.step == 3
    resumed.run()
    _assert_same(full.model.state_dict(), resumed.model.state_dict())
    _assert_same(full.ema.state_dict(), resumed.ema.state_dict())
    steps = [json.loads(line)["step"] for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_mid_step_finishes_the_step_and_writes_a_consistent_checkpoint(cifar_small, tmp_path):
    import os
    import signal

    trainer = _trainer(cifar_small, tmp_path, steps=50)
    calls = []

    def cond_fn(batch):  # runs inside a step, after the batch was drawn and before the loss
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return batch.labels

    trainer.cond_fn = cond_fn
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert state["step"] == 3 and state["data"] == {"epoch": 0, "offset": 24}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_different_seeds_differ_same_seed_repeats(cifar_small, tmp_path):
    a, b, c = (_trainer(cifar_small, tmp_path / n, steps=2, seed=s) for n, s in [("a", 0), ("b", 0), ("c", 1)])
    for t in (a, b, c):
        t.run()
    _assert_same(a.model.state_dict(), b.model.state_dict())
    assert not torch.equal(a.model.blocks[0].attn.qkv.weight, c.model.blocks[0].attn.qkv.weight)


def test_epoch_batches_are_a_function_of_seed_and_epoch():
    b = EpochBatches(10, 4, seed=7)
    seen = [b.next() for _ in range(4)]  # 2 per epoch (tail of 2 dropped)
    assert b.epoch == 1
    assert len(set(torch.cat(seen[:2]).tolist())) == 8
    c = EpochBatches(10, 4, seed=7)
    c.load_state_dict({"epoch": 1, "offset": 4})
    assert torch.equal(c.next(), seen[3])
    with pytest.raises(DataError, match="batch"):
        EpochBatches(3, 4, 0)


def test_train_config_rejects_bad_values():
    with pytest.raises(SpecError):
        TrainConfig(steps=0)
    with pytest.raises(SpecError, match="precision"):
        TrainConfig(precision="fp8")
    with pytest.raises(SpecError, match="residual"):
        TrainConfig(residual="fp16")


def test_residual_stream_follows_bf16_autocast_unless_fp32_is_asked(cifar_small, tmp_path):
    """Under bf16 autocast the trained DiT carries a bf16 residual stream (the benchmarked fast path) and
    still trains; ``residual="fp32"`` and fp32 training keep DiT's fp32 stream; the EMA copy keeps fp32."""
    cpu = torch.device("cpu")
    assert TrainConfig(precision="bf16").residual_dtype(cpu) is torch.bfloat16
    assert TrainConfig(precision="bf16", residual="fp32").residual_dtype(cpu) is None
    assert TrainConfig().residual_dtype(cpu) is None  # auto precision on the CPU: fp32
    model = build_dit("tiny", input_size=32, in_channels=3, condition="class", num_classes=10)
    cfg = TrainConfig(steps=2, batch_size=8, warmup_steps=0, ckpt_every=2, log_every=1, precision="bf16")
    trainer = Trainer(model, MemorySource(cifar_small, 8, 0), ObjectiveConfig("fm", "flow-linear"), cfg,
                      tmp_path / "bf16", cond_fn=lambda batch: batch.labels)
    assert model.residual_dtype is torch.bfloat16 and trainer.ema.module.residual_dtype is None
    before = [p.detach().clone() for p in model.parameters()]
    result = trainer.run()
    assert result.step == 2 and torch.isfinite(torch.tensor(result.final_loss))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
