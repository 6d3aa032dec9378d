"""Evaluation: every number names its metric and the network (with a hash of its weights) behind it.

Images (uint8 ``(B, 3, H, W)`` from PNG directories, webdataset shards, aliases like ``cifar10-test``,
or tensors) go through a feature extractor into streaming float64 statistics (μ, Σ); two statistics
from the same extractor give a Fréchet distance — ``FID`` with torch-fidelity's standard InceptionV3,
``FD`` with the project's CIFAR-10 classifier (whose test accuracy travels with every number). LPIPS
diversity and CLIP score work on groups of images and on (image, prompt) pairs. Evaluation samples are
written by ``sample_for_eval``, sharded over torchrun ranks, seeded per sample index::

    from hddm_p2p.eval import get_extractor, reference_stats, evaluate_fd
    ext = get_extractor("classifier:clf/")                  # or "inception" (needs its weights)
    ref = reference_stats("cifar10-test", ext)              # or a .npz from `hddm eval stats`
    record = evaluate_fd("samples/", ref, ext)              # {"metric": "FD", "value": ..., "extractor": ...}
"""

from hddm_p2p.eval.clip_score import ClipScorer, clip_score
from hddm_p2p.eval.diversity import LpipsModel, load_lpips, lpips_diversity, per_group_diversity
from hddm_p2p.eval.evaluate import evaluate_clip, evaluate_diversity, evaluate_fd, fd_record, reference_stats, source_stats
from hddm_p2p.eval.extractors import FeatureExtractor, get_extractor, metric_name
from hddm_p2p.eval.frechet import (Stats, StatsAccumulator, compute_stats, frechet_distance, frechet_distance_from_stats,
                                   load_stats, save_stats)
from hddm_p2p.eval.images import iter_batches, load_all, load_groups
from hddm_p2p.eval.records import make_record, records_table, write_records
from hddm_p2p.eval.sampling import merge_shards, per_sample_noise, sample_for_eval, sample_for_eval_distributed

__all__ = ["ClipScorer", "FeatureExtractor", "LpipsModel", "Stats", "StatsAccumulator", "clip_score", "compute_stats",
           "evaluate_clip", "evaluate_diversity", "evaluate_fd", "fd_record", "frechet_distance",
           "frechet_distance_from_stats", "get_extractor", "iter_batches", "load_all", "load_groups", "load_lpips",
           "load_stats", "lpips_diversity", "make_record", "merge_shards", "metric_name", "per_group_diversity",
           "per_sample_noise", "records_table", "reference_stats", "sample_for_eval", "sample_for_eval_distributed",
           "save_stats", "source_stats", "write_records"]
