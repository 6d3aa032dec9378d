"""PNG figures of an experiment's results: FD and diversity per configuration, the threshold sweep, and
a sample sheet (one row of images per configuration). Inputs are the rows of ``results.json``."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from hddm_p2p.experiments.metrics import DIVERSITY_METRIC, FD_METRIC


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    _plt().close(fig)
    tmp.replace(path)


def _done(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok"]


def plot_bars(rows: list[dict], path: Path, title: str, fd_label: str) -> None:
    """Horizontal bars of FD and diversity, one bar per configuration: mean ± std over training seeds
    (over sampling seeds with one), and a dot per training seed."""
    rows = _done(rows)
    if not rows:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.42 * len(rows) + 1.6), dpi=120, sharey=True)
    names = [r["name"] for r in rows][::-1]
    for ax, key, label in ((axes[0], "fd", fd_label), (axes[1], "diversity", DIVERSITY_METRIC)):
        means = [r[key]["mean"] for r in rows][::-1]
        errs = [r[key]["std"] for r in rows][::-1]
        ax.barh(names, means, xerr=errs, color=["#4c72b0" if "ddpm" not in n else "#dd8452" for n in names])
        for i, r in enumerate(rows[::-1]):
            seeds = r[key].get("per_training_seed", [])
            ax.plot(seeds, [i] * len(seeds), "k.", ms=4)
        ax.set_xlabel(label, fontsize=8)
        lo = min(means) - 2 * max(errs + [0]) if key == "diversity" else 0
        ax.set_xlim(left=max(lo, 0))
    axes[0].set_title(f"{title}: {FD_METRIC} ↓", fontsize=9)
    axes[1].set_title("diversity ↑", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_threshold(rows: list[dict], path: Path, fd_label: str) -> None:
    """FD and diversity against τ, one line per ordering (rows named ``*-<ordering>-tau<τ>``); error bars as
    in ``plot_bars``."""
    pat = re.compile(r"-(fm-first|ddpm-first)-tau([0-9.]+)$")
    series: dict[str, list[tuple[float, dict]]] = {}
    for r in _done(rows):
        m = pat.search(r["name"])
        if m:
            series.setdefault(m.group(1), []).append((float(m.group(2)), r))
    if not series:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), dpi=120)
    label = {"fm-first": "FM→DDPM (FM at t > τ)", "ddpm-first": "DDPM→FM (DDPM at t > τ)"}
    for order, pts in series.items():
        pts.sort(key=lambda p: p[0])
        taus = [p[0] for p in pts]
        for ax, key in ((axes[0], "fd"), (axes[1], "diversity")):
            ax.errorbar(taus, [p[1][key]["mean"] for p in pts], yerr=[p[1][key]["std"] for p in pts], marker="o",
                        capsize=3, label=label[order])
    axes[0].set(xlabel="threshold τ", ylabel=fd_label, title=f"{FD_METRIC} ↓ vs threshold")
    axes[1].set(xlabel="threshold τ", ylabel="diversity", title="diversity ↑ vs threshold")
    axes[1].set_ylabel(DIVERSITY_METRIC, fontsize=7)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def sample_sheet(samples: dict[str, torch.Tensor], path: Path, per_row: int = 16) -> None:
    """One row of ``per_row`` uint8 images (N, 3, H, W) per configuration, labelled with its name."""
    if not samples:
        return
    plt = _plt()
    fig, axes = plt.subplots(len(samples), 1, figsize=(per_row * 0.4 + 2.4, 0.45 * len(samples) + 0.2), dpi=80,
                             squeeze=False)  # 32 px images at ~32 px each: the sheet stays well under 1 MB
    for ax, (name, imgs) in zip(axes[:, 0], samples.items()):
        row = imgs[:per_row].permute(0, 2, 3, 1)  # (n, H, W, 3)
        ax.imshow(torch.cat(list(row), dim=1).numpy())
        ax.set_yticks([])
        ax.set_xticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.subplots_adjust(left=0.2, right=0.99, top=0.99, bottom=0.01, hspace=0.08)
    _save(fig, path)
