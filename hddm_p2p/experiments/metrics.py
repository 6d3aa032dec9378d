"""The two numbers every configuration gets, both in the project's CIFAR-10 classifier feature space.

FD: the Fréchet distance between Gaussians fitted to the penultimate features of the generated images
and of the reference test images (``hddm_p2p.eval.frechet``; Inception weights are absent here).

Diversity (LPIPS backbone weights are absent here, so LPIPS is not used): the *intra-class mean
pairwise cosine distance of classifier features*. Generated images are grouped by the class the same
classifier predicts for them; within each group of n ≥ 2 images

    div(group) = 2 / (n (n−1)) · Σ_{i<j} (1 − cos(f_i, f_j))

and the reported value is the mean (± std) of div over the groups, each class weighing the same, like
the paper's intra-prompt LPIPS over prompts.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hddm_p2p.eval.frechet import Stats, StatsAccumulator, frechet_distance_from_stats

FD_METRIC = "FD"
DIVERSITY_METRIC = "intra-class mean pairwise cosine distance of classifier features"


def fd(feats: torch.Tensor, ref: Stats) -> float:
    """Fréchet distance of features (N, D) against reference statistics from the same extractor."""
    acc = StatsAccumulator()
    acc.update(feats)
    return frechet_distance_from_stats(acc.stats(ref.extractor, ref.info), ref)


def mean_pairwise_cosine_distance(f: torch.Tensor) -> float:
    """2/(n(n−1)) Σ_{i<j} (1 − cos(f_i, f_j)) for features f (n, D), n ≥ 2."""
    z = F.normalize(f.double(), dim=1)
    n = z.shape[0]
    sim = z @ z.T  # (n, n), diagonal 1
    return float((n * n - sim.sum()) / (n * (n - 1)))  # Σ_{i≠j}(1 − cos) = n² − Σ_ij cos


def class_diversity(feats: torch.Tensor, predicted: torch.Tensor) -> tuple[float, float, int]:
    """(mean, std, groups) of the per-predicted-class mean pairwise cosine distance; classes with < 2 images skipped."""
    values = [mean_pairwise_cosine_distance(feats[predicted == c]) for c in predicted.unique().tolist()
              if int((predicted == c).sum()) >= 2]
    if not values:
        return float("nan"), float("nan"), 0
    return float(np.mean(values)), float(np.std(values)), len(values)


@torch.no_grad()
def predict(extractor, feats: torch.Tensor) -> torch.Tensor:
    """Class predictions (N,) of the classifier's head on its own penultimate features (N, D)."""
    head = extractor.net.head
    return head(feats.to(head.weight.device, head.weight.dtype)).argmax(1).cpu()


def score(extractor, images: list[torch.Tensor], ref: Stats) -> tuple[list[float], list[float], list[float]]:
    """(FD, diversity mean, diversity std) of each sampling seed's uint8 images (n, 3, H, W) against ``ref``."""
    from hddm_p2p.experiments.prepare import features

    fds, divs, stds = [], [], []
    for imgs in images:
        f = features(extractor, imgs)
        mean, std, _ = class_diversity(f, predict(extractor, f))
        fds.append(fd(f, ref)), divs.append(mean), stds.append(std)
    return fds, divs, stds
