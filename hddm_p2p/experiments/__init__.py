"""Config-driven experiments that test the paper's claims on real data (CIFAR-10 at small scale).

    config.yaml ─► data ─► FD classifier ─► clusters (k-means on its features) ─► experts (equal settings)
                ─► router ─► ensembles × sampling seeds ─► FD + diversity ─► results.json, summary.md, PNGs

``hddm experiment run experiments/cifar10_small.yaml --out runs/small --device cuda`` or::

    from hddm_p2p.experiments import load_config, run_experiment
    results = run_experiment(load_config("experiments/cifar10_toy.yaml"), Path("runs/toy"), device="cpu")
"""

from hddm_p2p.experiments.config import ExperimentConfig, load_config, parse_config
from hddm_p2p.experiments.runner import run_experiment

__all__ = ["ExperimentConfig", "load_config", "parse_config", "run_experiment"]
