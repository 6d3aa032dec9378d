"""``split_qkv``: attention's projection as three matmuls while training gives the packed projection's values and
gradients (CPU, eager and compiled); on CUDA a compiled bf16 step matches too (GPU machine)."""

import pytest
import torch

from hddm_p2p.models import build_dit, split_qkv

_PROJECT = split_qkv.project
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _model(device="cpu", **kw):
    torch.manual_seed(0)
    model = build_dit("tiny", input_size=8, in_channels=3, condition="class", num_classes=10, **kw).to(device)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _loss_and_grads(run, model, split, monkeypatch, *inputs, autocast=None):
    monkeypatch.setattr(split_qkv, "enabled", split)
    calls = []
    monkeypatch.setattr(split_qkv, "project", lambda *a: calls.append(1) or _PROJECT(*a))
    model.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    with autocast or torch.autocast("cpu", enabled=False):
        loss = run(*inputs).float().square().mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, calls


@pytest.mark.parametrize("compiled", [False, True])
def test_split_projection_gives_the_packed_values_and_gradients(compiled, monkeypatch):
    model = _model()
    run = torch.compile(model) if compiled else model
    x, t, y = torch.randn(3, 3, 8, 8), torch.tensor([5.0, 300.0, 900.0]), torch.tensor([1, 4, 7])
    ref_loss, ref, ref_calls = _loss_and_grads(run, model, False, monkeypatch, x, t, y)
    loss, got, calls = _loss_and_grads(run, model, True, monkeypatch, x, t, y)
    assert not ref_calls and (compiled or len(calls) == len(model.blocks))  # eager: every block took it
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert got.keys() == ref.keys() and ref["blocks.0.attn.qkv.weight"].abs().sum() > 0
    for name in ref:
        torch.testing.assert_close(got[name], ref[name], rtol=1e-4, atol=1e-6, msg=name)


def test_split_projection_under_bf16_autocast_and_not_when_sampling(monkeypatch):
    model = _model()
    x, t, y = torch.randn(3, 3, 8, 8), torch.tensor([5.0, 300.0, 900.0]), torch.tensor([1, 4, 7])
    amp = torch.autocast("cpu", dtype=torch.bfloat16)
    ref_loss, ref, _ = _loss_and_grads(model, model, False, monkeypatch, x, t, y, autocast=amp)
    loss, got, calls = _loss_and_grads(model, model, True, monkeypatch, x, t, y, autocast=amp)
    assert calls and all(g.dtype == torch.float32 for g in got.values())  # fp32 parameters, fp32 gradients
    torch.testing.assert_close(loss, ref_loss, rtol=2e-2, atol=1e-4)
    worst = max(((got[n] - ref[n]).norm() / ref[n].norm()).item() for n in ref if ref[n].norm() > 0)
    assert worst < 5e-2, worst
    calls.clear()
    with torch.no_grad():
        model(x, t, y)
    assert not calls  # sampling keeps the one packed matmul


def test_input_grad_op_is_the_sum_of_three_matmuls():
    torch.manual_seed(0)
    dq, dk, dv, w = torch.randn(5, 4), torch.randn(5, 4), torch.randn(5, 4), torch.randn(12, 4)
    expected = dq @ w[:4] + dk @ w[4:8] + dv @ w[8:]
    torch.testing.assert_close(split_qkv.qkv_input_grad(dq, dk, dv, w), expected)
    torch.library.opcheck(split_qkv.qkv_input_grad, (dq, dk, dv, w))


@cuda
def test_compiled_bf16_training_step_matches_on_cuda(monkeypatch):
    model = build_dit("DiT-S/2", input_size=16, in_channels=4).cuda()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(8, 4, 16, 16, device="cuda"), torch.rand(8, device="cuda") * 1000
    run = torch.compile(model)
    amp = torch.autocast("cuda", dtype=torch.bfloat16)
    _, ref, _ = _loss_and_grads(run, model, False, monkeypatch, x, t, autocast=amp)
    _, got, _ = _loss_and_grads(run, model, True, monkeypatch, x, t, autocast=amp)
    assert got.keys() == ref.keys()
    worst = max(((got[n] - ref[n]).norm() / ref[n].norm()).item() for n in ref if ref[n].norm() > 0)
    assert worst < 5e-2, worst
