"""The ``--router`` choices of ``hddm assemble`` and the router objects ``hddm generate`` builds from a lock.

    train          train a router here, from the experts' centroids and local --data   → lock kind "local"
    <CID>          a published router manifest whose expert list must match            → lock kind "cid"
    threshold:TAU  flow-matching experts above τ, converted experts at or below τ      → lock kind "threshold"
    uniform        every expert equally weighted                                       → lock kind "uniform"

Threshold routing follows the paper's stable ordering (FM at high noise, DDPM refining at low noise), and
which expert is which is read from the manifests: a velocity-predicting expert is "high", every other
(converted: ε, x0, v) expert is "low". No flag says which expert is DDPM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from hddm_p2p.diffusion import ThresholdRouter, UniformRouter
from hddm_p2p.errors import CompatibilityError, SpecError
from hddm_p2p.p2p.cid import parse_cid

Tensor = torch.Tensor


@dataclass(frozen=True)
class RouterChoice:
    """A parsed ``--router`` value: ``kind`` is train | cid | threshold | uniform."""

    kind: str
    cid: str | None = None
    tau: float | None = None

    @classmethod
    def parse(cls, value: str) -> "RouterChoice":
        v = value.strip()
        if v in ("train", "uniform"):
            return cls(v)
        if v.startswith("threshold:"):
            try:
                tau = float(v.removeprefix("threshold:"))
            except ValueError:
                raise SpecError(f"--router {value!r}: write threshold:TAU with TAU a number in [0, 1], "
                                "e.g. threshold:0.5") from None
            if not 0 <= tau <= 1:
                raise SpecError(f"--router {value!r}: TAU must be in [0, 1]")
            return cls("threshold", tau=tau)
        try:
            return cls("cid", cid=parse_cid(v.removeprefix("/ipfs/")))
        except Exception:
            raise SpecError(f"--router {value!r} is not one of train, uniform, threshold:TAU or a router "
                            "manifest CID") from None


def threshold_split(predictions: Sequence[str], names: Sequence[str]) -> tuple[list[int], list[int]]:
    """(low, high) expert indices: velocity predictors handle t > τ, converted experts t ≤ τ."""
    high = [i for i, p in enumerate(predictions) if p == "velocity"]
    low = [i for i, p in enumerate(predictions) if p != "velocity"]
    if not high or not low:
        kinds = ", ".join(f"{n} ({p})" for n, p in zip(names, predictions))
        raise CompatibilityError(f"threshold routing needs at least one flow-matching (velocity) expert and one "
                                 f"converted expert (epsilon/x0/v); this ensemble has {kinds}. "
                                 "Use --router uniform or train a router instead")
    return low, high


def threshold_params(tau: float, predictions: Sequence[str], names: Sequence[str]) -> dict[str, Any]:
    low, high = threshold_split(predictions, names)
    return {"tau": tau, "low": low, "high": high}


def threshold_router(params: dict[str, Any], n_experts: int) -> ThresholdRouter:
    return ThresholdRouter(float(params["tau"]), list(params["low"]), list(params["high"]), n_experts)


def uniform_router(n_experts: int) -> UniformRouter:
    return UniformRouter(n_experts)


class ReorderedRouter:
    """A trained router whose columns name experts by id, re-indexed into the ensemble's member order.

    ``logits[:, j]`` of the result belongs to ``member_ids[j]``; a member the router does not know is a
    CompatibilityError when this is built, never a silent mis-routing.
    """

    def __init__(self, router, router_ids: Sequence[str], member_ids: Sequence[str]):
        missing = [m for m in member_ids if m not in router_ids]
        if missing or len(router_ids) != len(member_ids):
            raise CompatibilityError(f"the router's experts {list(router_ids)} do not match the lock's members "
                                     f"{list(member_ids)}; assemble the ensemble again")
        self.router, self.n_experts = router, len(member_ids)
        self.perm = torch.tensor([list(router_ids).index(m) for m in member_ids])

    def __call__(self, x_t: Tensor, t) -> Tensor:
        logits = self.router(x_t, t)  # (B, K) in the router's column order
        return logits.index_select(1, self.perm.to(logits.device))
