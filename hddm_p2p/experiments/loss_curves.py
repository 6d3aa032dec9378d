"""Where each objective under-trains: the clean-sample error E‖x̂0 − x0‖² of trained experts against t.

The paper writes both losses as weighted clean-sample errors: ‖ε̂ − ε‖² = (α/σ)²‖x̂0 − x0‖² and, on the
flow-linear path, ‖v̂ − v‖² = (1/σ)²‖x̂0 − x0‖², so ε-prediction puts relatively more weight on low noise
and velocity on high noise (ratio 1/α²). Here the errors are *measured*: held-out images x0, fixed ε,
x_t = (1−t)·x0 + t·ε on the flow path; an expert on schedule S is queried at the time s of equal
log-SNR with x_s = (α(s)+σ(s))·x_t (as the ensemble does) and its output read as x̂0 exactly (no clamp).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hddm_p2p.diffusion import to_pivot
from hddm_p2p.diffusion.schedules import FlowLinear
from hddm_p2p.experiments.routers import autocast

Tensor = torch.Tensor
_FLOW = FlowLinear()


@torch.no_grad()
def x0_error(model, spec, x0: Tensor, t: float, seed: int = 0, batch: int = 500) -> float:
    """Mean over images and pixels of (x̂0 − x0)² at flow time ``t`` ∈ (0, 1); x0 (N, 3, H, W) in [−1, 1]."""
    s = spec.sched.s_from_log_snr(_FLOW.log_snr(torch.tensor(t, dtype=torch.float64)))
    a, sg = float(spec.sched.alpha(s)), float(spec.sched.sigma(s))
    gen, total = torch.Generator().manual_seed(seed), 0.0
    dev = next(model.parameters()).device
    for i in range(0, len(x0), batch):
        x = x0[i:i + batch].to(dev)
        eps = torch.randn(x.shape, generator=gen).to(dev)
        x_s = (a + sg) * ((1 - t) * x + t * eps)  # = α(s)·x0 + σ(s)·ε
        with autocast(dev):
            out = model(x_s, torch.full((len(x),), spec.time_scale * float(s), device=dev), None).float()
        x0_hat, _ = to_pivot(spec.prediction, out, x_s, torch.tensor(a, device=dev), torch.tensor(sg, device=dev))
        total += float((x0_hat - x).pow(2).sum())
    return total / x0.numel()


def error_curves(experts: dict, x0: Tensor, ts: list[float]) -> dict[str, list[list[float]]]:
    """{expert name: [[t, E‖x̂0 − x0‖² per pixel], ...]} for ``experts`` (name → TrainedExpert)."""
    return {name: [[t, x0_error(e.model, e.spec, x0, t)] for t in ts] for name, e in experts.items()}


def plot_error_curves(curves: dict[str, list[list[float]]], labels: dict[str, str], path: Path) -> None:
    """Two panels: the error of each expert vs t (log scale), and each error relative to the first expert's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=120)
    names = list(curves)
    base = dict((t, v) for t, v in curves[names[0]])
    for n in names:
        ts, vs = zip(*curves[n])
        ax.plot(ts, vs, "o-", ms=3, label=labels.get(n, n))
        ax2.plot(ts, [v / base[t] for t, v in curves[n]], "o-", ms=3, label=labels.get(n, n))
    ax.set(yscale="log", xlabel="t (flow time; 0 clean → 1 noise)", ylabel="E‖x̂0 − x0‖² per pixel",
           title="Clean-sample error of trained experts")
    ax2.axhline(1, color="gray", ls="--", lw=0.8)
    ax2.set(yscale="log", xlabel="t", ylabel=f"error / error of {labels.get(names[0], names[0])}",
            title="Relative error (< 1: better than the reference)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
