"""One call per metric from image sources to a result record (``records.py``): what the CLI and runners use.

    ref = reference_stats("cifar10-test", extractor)           # or a stats .npz saved by `hddm eval stats`
    rec = evaluate_fd("samples/", ref, extractor)               # {"metric": "FD", "value": ..., "extractor": ...}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from hddm_p2p.errors import CompatibilityError, DataError
from hddm_p2p.eval.clip_score import ClipScorer, clip_score
from hddm_p2p.eval.diversity import LpipsModel, per_group_diversity
from hddm_p2p.eval.extractors import FeatureExtractor, metric_name
from hddm_p2p.eval.frechet import (Stats, check_compatible, compute_stats, frechet_distance_from_stats, load_stats,
                                   sample_size_warnings)
from hddm_p2p.eval.images import ImageSource, count_images, iter_batches
from hddm_p2p.eval.records import make_record


def source_stats(source: ImageSource, extractor: FeatureExtractor, *, batch: int = 100, limit: int | None = None,
                 progress: bool = True) -> Stats:
    """Feature statistics of an image source (tensor, directory, shards, alias)."""
    label = "tensor" if isinstance(source, torch.Tensor) else str(source)
    return compute_stats(extractor, iter_batches(source, batch, limit), total=count_images(source, limit),
                         progress=progress, info={"source": label})


def reference_stats(ref: ImageSource, extractor: FeatureExtractor, **kwargs) -> Stats:
    """Stats saved by ``hddm eval stats`` (a ``.npz``; its extractor must be ``extractor``) or computed from images."""
    if isinstance(ref, (str, Path)) and str(ref).endswith(".npz"):
        stats = load_stats(Path(ref))
        if stats.extractor != extractor.id:
            raise CompatibilityError(f"reference statistics {str(ref)!r} were computed with {stats.extractor!r}, not with "
                            f"{extractor.id!r}; recompute them with `hddm eval stats` and the same --extractor")
        return stats
    return source_stats(ref, extractor, **kwargs)


def fd_record(gen: Stats, ref: Stats) -> dict[str, Any]:
    """The FD/FID record of two statistics, with sample-size warnings (N < 2·D)."""
    check_compatible(gen, ref)
    value = frechet_distance_from_stats(gen, ref)
    warnings = sample_size_warnings(gen, "generated") + sample_size_warnings(ref, "reference")
    return make_record(metric_name(gen.extractor), value, gen.extractor, test_accuracy=gen.info.get("test_accuracy"),
                       feature_dim=gen.dim, n_gen=gen.n, n_ref=ref.n, gen=gen.info.get("source"),
                       ref=ref.info.get("source"), warnings=warnings)


def evaluate_fd(gen: ImageSource, ref: ImageSource | Stats, extractor: FeatureExtractor, **kwargs) -> dict[str, Any]:
    """FD (or FID, with the Inception extractor) between generated images and a reference set or its stats."""
    ref_stats = ref if isinstance(ref, Stats) else reference_stats(ref, extractor, **kwargs)
    if ref_stats.extractor != extractor.id:
        raise CompatibilityError(f"reference statistics come from {ref_stats.extractor!r}, the extractor is {extractor.id!r}; "
                        "use the same extractor for both")
    return fd_record(source_stats(gen, extractor, **kwargs), ref_stats)


def evaluate_diversity(groups: Mapping[object, torch.Tensor], model: LpipsModel, *, source: str = "") -> dict[str, Any]:
    """The LPIPS-diversity record: mean ± std over groups of the mean pairwise LPIPS within each group."""
    per_group = per_group_diversity(groups, model)
    t = torch.tensor(per_group, dtype=torch.float64)
    sizes = [int(g.shape[0]) for g in groups.values()]
    return make_record("LPIPS-diversity", float(t.mean()), model.id, std=float(t.std(unbiased=False)),
                       n_groups=len(sizes), group_sizes=sorted(set(sizes)), gen=source,
                       per_group={str(k): round(v, 6) for k, v in zip(groups, per_group)},
                       warnings=["random LPIPS backbone: not comparable with published LPIPS"]
                       if "random-backbone" in model.id else [])


def evaluate_clip(scorer: ClipScorer, images: ImageSource, prompts: Sequence[str], *, batch: int = 64,
                  source: str = "") -> dict[str, Any]:
    """The CLIP-score record of images (in source order) against one prompt each."""
    n_prompts = len(prompts)
    pairs, start = [], 0
    for b in iter_batches(images, batch):
        if start + b.shape[0] > n_prompts:
            raise DataError(f"more images than prompts ({n_prompts}) in {source or 'the image set'}; "
                            "give one prompt per image, in sorted file order")
        pairs.append((b, prompts[start:start + b.shape[0]]))
        start += b.shape[0]
    if start != n_prompts:
        raise DataError(f"{start} images but {n_prompts} prompts; give one prompt per image, in sorted file order")
    mean, std, n = clip_score(scorer, pairs)
    return make_record("CLIP-score", mean, scorer.id, std=std, n=n, gen=source, warnings=[])
