"""``Ensemble``: experts of any objective and schedule, combined in one flow-linear velocity space.

The ensemble integrates x_t = (1−t)·x0 + t·ε from t = 1 to 0. For an expert on schedule S it finds
the time s with λ_S(s) = λ_flow(t) (equal signal-to-noise ratio), feeds it x_s = (α(s)+σ(s))·x_t —
the same point of the other path, since both are scalings of (x0, ε) with the same ratio — reads its
output as (x̂0, ε̂) through the prediction pivot, and returns u = ε̂ − x̂0. Velocity experts on the
flow-linear path pass through unchanged. The router's weights combine the per-expert velocities.

Dispatch is batched: within a step each expert runs once, on exactly the samples routed to it
with non-zero weight; an expert no sample picks is not called. The host waits on the device twice a
step: once for the per-expert sample counts (every index is then computed on the device from one
stable sort of the routing mask) and once for the finiteness check. With ``batch_cfg=True`` and class
ids as the condition, an expert's conditional and null branches run as one call on 2·n rows, the
null rows carrying class id −1 (``docs/contracts.md``: a negative class id means the null class).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from hddm_p2p.diffusion.prediction import to_pivot
from hddm_p2p.diffusion.routing import Mode, check_logits, routing_weights
from hddm_p2p.diffusion.safeguards import Safeguards, scale_velocity
from hddm_p2p.diffusion.schedules import FlowLinear
from hddm_p2p.diffusion.solvers import SOLVERS, time_grid
from hddm_p2p.diffusion.spec import ExpertSpec
from hddm_p2p.errors import NumericalError, SpecError

Tensor = torch.Tensor
Expert = tuple[Callable[..., Tensor], ExpertSpec]
_FLOW = FlowLinear()


def _take(cond: Any, idx: Tensor) -> Any:
    """Rows ``idx`` of a conditioning tensor, or of every tensor in a dict; None stays None."""
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {k: _take(v, idx) for k, v in cond.items()}
    return cond.index_select(0, idx)


def _col(v: Tensor, ndim: int) -> Tensor:
    return v.view(-1, *[1] * (ndim - 1))


def expert_velocity(model: Callable, spec: ExpertSpec, x_t: Tensor, t: Tensor, cond=None,
                    safeguards: Safeguards = Safeguards()) -> Tensor:
    """One expert's prediction at flow time ``t`` (B,), converted to the flow-linear velocity."""
    if spec.native:
        return model(x_t, spec.time_scale * t.to(x_t.dtype), cond).float()
    work = torch.promote_types(x_t.dtype, torch.float32)
    t64 = t.to(torch.float64)
    s = spec.sched.s_from_log_snr(_FLOW.log_snr(t64))  # equal log-SNR on the expert's schedule
    a, sg = spec.sched.alpha(s), spec.sched.sigma(s)
    a_, sg_ = _col(a.to(work), x_t.ndim), _col(sg.to(work), x_t.ndim)
    x_s = (x_t.to(work) * (a_ + sg_)).to(x_t.dtype)
    out = model(x_s, (spec.time_scale * s).to(x_t.dtype), cond).to(work)
    x0, eps = to_pivot(spec.prediction, out, x_s.to(work), a_, sg_, safeguards.alpha_min)
    if safeguards.clamp_x0:
        x0 = x0.clamp(-spec.clip, spec.clip)
    u = eps - x0
    if safeguards.velocity_scaling:
        u = scale_velocity(u, eps, a_, sg_, spec.clip)
    return u.float()


class Ensemble:
    """Weighted combination of experts in the shared velocity space, and a sampler over it.

    Args:
        experts: list of ``(model, ExpertSpec)``; a model is called ``model(x_s, time_scale*s, cond)``.
        router: callable ``router(x_t, t) -> logits (B, K)``; ``None`` weighs all experts equally.
        mode: ``"top-1"``, ``"top-k"`` (weights renormalised over the k chosen) or ``"full"``.
        k: experts per sample in top-k mode; k ≥ K means all.
        safeguards: ``True`` (the paper's three, on for converted experts), ``False``, or ``Safeguards``.
        batch_cfg: run classifier-free guidance's two branches as one expert call when ``cond`` is a
            tensor of class ids (null rows get id −1); needs experts that read a negative id as null.

    Example:
        >>> ens = Ensemble([(ddpm, ExpertSpec("epsilon", "vp-linear", 999)),
        ...                 (fm, ExpertSpec("velocity", "flow-linear"))], router, mode="top-k", k=2)
        >>> x0 = ens.sample(torch.randn(8, 4, 32, 32), steps=50, solver="heun")
    """

    def __init__(self, experts: Sequence[Expert], router=None, mode: str = "top-k", k: int = 2,
                 safeguards: bool | Safeguards = True, batch_cfg: bool = False):
        if not experts:
            raise SpecError("an ensemble needs at least one expert")
        for i, (_, spec) in enumerate(experts):
            if not isinstance(spec, ExpertSpec):
                raise SpecError(f"expert {i}: expected an ExpertSpec, got {type(spec).__name__}")
        self.experts = list(experts)
        self.router = router
        self.mode = Mode.parse(mode)
        if k < 1:
            raise SpecError(f"k must be at least 1, got {k}")
        self.k = k
        self.safeguards = Safeguards.parse(safeguards)
        self.batch_cfg = batch_cfg

    def __len__(self) -> int:
        return len(self.experts)

    def weights(self, x_t: Tensor, t: Tensor) -> Tensor:
        """(B, K) routing weights, each row summing to 1."""
        B, K = x_t.shape[0], len(self.experts)
        if self.router is None:
            return torch.full((B, K), 1.0 / K, device=x_t.device)
        logits = check_logits(self.router(x_t, t), B, K)
        return routing_weights(logits, self.mode, self.k)

    def _expert_u(self, i: int, x: Tensor, t: Tensor, cond, cfg_scale: float) -> Tensor:
        model, spec = self.experts[i]
        if self.batch_cfg and isinstance(cond, Tensor) and not cond.is_floating_point() and cfg_scale != 1.0:
            both = torch.cat([cond, torch.full_like(cond, -1)])  # (2n,): conditional rows, then null rows
            u, u_null = expert_velocity(model, spec, torch.cat([x, x]), torch.cat([t, t]), both,
                                        self.safeguards).chunk(2)
            return u_null + cfg_scale * (u - u_null)
        u = expert_velocity(model, spec, x, t, cond, self.safeguards)
        if cond is not None and cfg_scale != 1.0:
            u_null = expert_velocity(model, spec, x, t, None, self.safeguards)
            u = u_null + cfg_scale * (u - u_null)
        return u

    def velocity(self, x_t: Tensor, t, cond=None, cfg_scale: float = 1.0, *, step: int | None = None,
                 callback: Callable[[dict], None] | None = None) -> Tensor:
        """Ensemble velocity u(x_t, t) = Σ_k w_k(x_t, t)·u_k(x_t, t), float32, shape of ``x_t``."""
        t = torch.as_tensor(t, dtype=torch.float32, device=x_t.device).reshape(-1).expand(x_t.shape[0])
        w = self.weights(x_t, t)  # (B, K)
        u = torch.zeros(x_t.shape, dtype=torch.float32, device=x_t.device)
        mask = (w > 0).t()  # (K, B)
        counts = mask.sum(1).tolist()  # the one host sync of the dispatch
        # row i of ``order``: the samples routed to expert i first, in batch order (stable sort)
        order = torch.sort(mask.to(torch.uint8), dim=1, descending=True, stable=True).indices
        active = [i for i, n in enumerate(counts) if n > 0]
        for i in active:  # experts that load lazily (pipeline.lazy) start reading from disk side by side
            getattr(self.experts[i][0], "prefetch", lambda: None)()
        parts = {}
        for i in active:
            idx = order[i, : counts[i]]
            u_i = self._expert_u(i, x_t.index_select(0, idx), t.index_select(0, idx), _take(cond, idx), cfg_scale)
            parts[i] = u_i
            u.index_add_(0, idx, _col(w.index_select(0, idx)[:, i], x_t.ndim) * u_i)
        if not torch.isfinite(u).all():
            bad = [i for i, p in parts.items() if not torch.isfinite(p).all()]
            where = f"expert {bad[0]}" if bad else "the router weights"
            at = f"step {step}, " if step is not None else ""
            raise NumericalError(f"non-finite velocity at {at}t={t[0].item():.4f} from {where}")
        if callback is not None:
            callback({"step": step, "t": float(t[0]), "weights": w, "active": active})
        return u

    @torch.no_grad()
    def sample(self, noise: Tensor, steps: int = 50, solver: str = "euler", cond=None, cfg_scale: float = 1.0,
               generator: torch.Generator | None = None, shift: float = 1.0,
               callback: Callable[[dict], None] | None = None) -> Tensor:
        """Integrate from ``noise`` (t = 1) to a sample (t = 0); deterministic ODE, so ``generator``
        is accepted for API stability and only used by stochastic solvers."""
        if solver not in SOLVERS:
            raise SpecError(f"unknown solver {solver!r}; choose one of: {', '.join(SOLVERS)}")
        if steps < 1:
            raise SpecError(f"steps must be at least 1, got {steps}")
        ts = time_grid(steps, shift).to(noise.device)

        def u(x, t, i):
            return self.velocity(x, t, cond, cfg_scale, step=i, callback=callback).to(x.dtype)

        return SOLVERS[solver](u, noise, ts)
