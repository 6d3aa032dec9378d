"""Which experts the router used, with what weight, at which t: recorded during sampling, plotted as a PNG."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class UsageRecorder:
    """``Ensemble.sample(..., callback=recorder)`` appends one row per velocity evaluation.

    ``mean_weight[i][k]`` is expert k's mean routing weight over the batch at evaluation i;
    ``share[i][k]`` the fraction of samples routed to k (weight > 0); ``rows[i]`` the batch size.
    Several batches sampled on the same time grid are merged per t by ``merged()`` (row-weighted).
    """

    names: list[str]
    t: list[float] = field(default_factory=list)
    mean_weight: list[list[float]] = field(default_factory=list)
    share: list[list[float]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)

    def __call__(self, info: dict) -> None:
        w = info["weights"].float()  # (B, K)
        self.t.append(info["t"])
        self.mean_weight.append(w.mean(0).tolist())
        self.share.append((w > 0).float().mean(0).tolist())
        self.rows.append(int(w.shape[0]))

    def merged(self) -> "UsageRecorder":
        """One row per distinct t, averaging the batches evaluated there (weighted by their sizes), t descending."""
        out = UsageRecorder(self.names)
        for t in sorted(set(self.t), reverse=True):
            idx = [i for i, ti in enumerate(self.t) if ti == t]
            n = torch.tensor([float(self.rows[i]) if self.rows else 1.0 for i in idx])[:, None]  # (R, 1)
            out.t.append(t)
            out.mean_weight.append(((torch.tensor([self.mean_weight[i] for i in idx]) * n).sum(0) / n.sum()).tolist())
            out.share.append(((torch.tensor([self.share[i] for i in idx]) * n).sum(0) / n.sum()).tolist())
            out.rows.append(int(n.sum()))
        return out

    def mean_weights(self) -> list[float]:
        """Each expert's mean weight over the whole trajectory, in expert order."""
        if not self.t:
            return [0.0] * len(self.names)
        return [float(v) for v in torch.tensor(self.mean_weight).mean(0)]

    def totals(self) -> dict[str, float]:
        """``mean_weights`` keyed by expert name."""
        return dict(zip(self.names, self.mean_weights()))

    def to_json(self) -> dict:
        return {"experts": self.names, "t": self.t, "mean_weight": self.mean_weight, "share": self.share,
                "rows": self.rows, "totals": self.totals()}

    def plot(self, path: Path, title: str = "expert usage") -> Path:
        """Stacked mean routing weight per expert against t (noise on the left, clean on the right)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        order = sorted(range(len(self.t)), key=lambda i: -self.t[i])
        t = [self.t[i] for i in order]
        w = torch.tensor([self.mean_weight[i] for i in order]).T.numpy() if order else []
        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
        if len(t):
            ax.stackplot(t, w, labels=self.names, step="post", alpha=0.85)
        ax.set_xlim(1, 0)
        ax.set_ylim(0, 1)
        ax.set_xlabel("t  (1 = pure noise → 0 = clean)")
        ax.set_ylabel("mean routing weight")
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
        fig.tight_layout()
        path = Path(path)
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp)
        plt.close(fig)
        tmp.replace(path)
        return path
