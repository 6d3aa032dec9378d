"""Config-driven experiments that test the paper's claims on real data (CIFAR-10 at small scale).

    config.yaml ─► data ─► FD classifier ─► clusters (k-means on its features) ─► experts (equal settings,
                ─► per training seed, in worker processes sharing the device) ─► router per training seed
                ─► ensembles × training seeds × sampling seeds ─► FD + diversity ─► results.json, summary.md, PNGs

``python -m hddm_p2p.experiments run experiments/cifar10_routed.yaml --out runs/routed --device cuda`` (or
``hddm experiment run ...``), or::

    from hddm_p2p.experiments import load_config, run_experiment
    results = run_experiment(load_config("experiments/cifar10_toy.yaml"), Path("runs/toy"), device="cpu")

Submodules load lazily, so a training worker that imports ``hddm_p2p.experiments.jobs`` does not import
the evaluation stack.
"""

from importlib import import_module

_EXPORTS = {"ExperimentConfig": "config", "load_config": "config", "parse_config": "config",
            "run_experiment": "runner"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"hddm_p2p.experiments.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'hddm_p2p.experiments' has no attribute {name!r}")
