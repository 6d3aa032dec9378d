"""Routing: from a router's logits to per-sample expert weights, and routers that need no training.

A router is any callable ``router(x_t, t) -> logits (B, K)`` on the ensemble's flow-linear path.
Weights sum to 1 over the experts of each sample; unselected experts get exactly 0 and never run.
"""

from __future__ import annotations

from enum import Enum
from typing import Sequence

import torch

from hddm_p2p.choices import parse_choice
from hddm_p2p.errors import ShapeError, SpecError

Tensor = torch.Tensor


class Mode(str, Enum):
    TOP_1 = "top-1"
    TOP_K = "top-k"
    FULL = "full"

    @classmethod
    def parse(cls, value: "str | Mode") -> "Mode":
        return parse_choice(cls, value, "routing mode")


def routing_weights(logits: Tensor, mode: Mode, k: int = 2) -> Tensor:
    """(B, K) weights: softmax over all experts (full), the k largest renormalised (top-k), or one-hot."""
    K = logits.shape[1]
    if mode is Mode.FULL or (mode is Mode.TOP_K and k >= K):
        return torch.softmax(logits.float(), dim=1)
    k = 1 if mode is Mode.TOP_1 else k
    top, idx = logits.float().topk(k, dim=1)
    return torch.zeros_like(logits, dtype=torch.float32).scatter(1, idx, torch.softmax(top, dim=1))


def check_logits(logits: Tensor, batch: int, n_experts: int) -> Tensor:
    if not isinstance(logits, Tensor) or tuple(logits.shape) != (batch, n_experts):
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ShapeError(f"router returned {got}; expected logits of shape (batch, experts) = ({batch}, {n_experts})")
    return logits


def _times(t, x: Tensor) -> Tensor:
    return torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1).expand(x.shape[0])


class UniformRouter:
    """Every expert equally likely."""

    def __init__(self, n_experts: int):
        self.n_experts = n_experts

    def __call__(self, x_t: Tensor, t) -> Tensor:
        return torch.zeros(x_t.shape[0], self.n_experts, device=x_t.device)


class ThresholdRouter:
    """Experts in ``low`` handle t ≤ τ, those in ``high`` handle t > τ (the paper's ordering study).

    FM→DDPM ordering is ``ThresholdRouter(tau, low=[ddpm], high=[fm])``.
    """

    def __init__(self, tau: float, low: Sequence[int], high: Sequence[int], n_experts: int | None = None):
        if not 0 <= tau <= 1:
            raise SpecError(f"threshold tau must be in [0, 1], got {tau}")
        if not low or not high:
            raise SpecError("ThresholdRouter needs at least one expert in low and one in high")
        self.tau, self.low, self.high = float(tau), list(low), list(high)
        self.n_experts = n_experts or max(self.low + self.high) + 1

    def __call__(self, x_t: Tensor, t) -> Tensor:
        t = _times(t, x_t)
        logits = torch.full((x_t.shape[0], self.n_experts), float("-inf"), device=x_t.device)
        is_low = (t <= self.tau).unsqueeze(1)  # (B, 1)
        logits[:, self.low] = torch.where(is_low, 0.0, float("-inf")).expand(-1, len(self.low))
        logits[:, self.high] = torch.where(is_low, float("-inf"), 0.0).expand(-1, len(self.high))
        return logits


class OracleRouter:
    """Routes each sample to the expert of its known label (for experiments with labelled data).

    ``labels`` is a (B,) tensor of expert indices fixed for the batch being sampled.
    """

    def __init__(self, labels: Tensor, n_experts: int):
        self.labels, self.n_experts = labels, n_experts

    def __call__(self, x_t: Tensor, t) -> Tensor:
        logits = torch.full((x_t.shape[0], self.n_experts), float("-inf"), device=x_t.device)
        return logits.scatter(1, self.labels.to(x_t.device).view(-1, 1), 0.0)
