"""Typed experiment configs, read from YAML strictly: unknown keys, unknown experts and unknown routers
are refused with one line naming the problem (``SpecError``) before any work starts.

A config names the data, the FD classifier, the clustering, the experts (objective, schedule, cluster,
compute multiple), the router, and the *ensembles* to evaluate: which experts, how they are routed
(``learned`` router over the clusters, ``uniform``, ``threshold`` τ with low/high experts, or ``none``
for one expert) and which sampler (the shared-velocity ``ensemble`` ODE or the expert's ``ddim``).
``threshold_sweeps`` expand into one ensemble per (ordering, τ). ``train.seeds`` replicates every
expert, the monolithic model and the router once per training seed; every ensemble is evaluated for
each. ``comparisons`` name the pairs whose paired differences the summary reports (threshold sweeps add
FM→DDPM vs DDPM→FM at each τ). See ``experiments/cifar10_small.yaml`` and ``cifar10_routed.yaml``.
"""

from __future__ import annotations

import dataclasses
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import yaml

from hddm_p2p.diffusion import get_schedule
from hddm_p2p.diffusion.routing import Mode
from hddm_p2p.errors import SpecError
from hddm_p2p.models.dit import get_preset
from hddm_p2p.train.objectives import Objective

ROUTERS = ("learned", "uniform", "threshold", "none")
SAMPLERS = ("ensemble", "ddim")
ORDERINGS = ("fm-first", "ddpm-first")  # fm-first: FM handles t > τ, then DDPM t ≤ τ (paper: FM→DDPM)


@dataclass(frozen=True)
class DataConfig:
    train: str
    test: str
    resolution: int = 32
    train_limit: int | None = None   # first N training images (toy runs)
    test_limit: int | None = None


@dataclass(frozen=True)
class ClassifierConfig:
    """The FD feature network: a recipe of ``hddm_p2p.eval.classifier.RECIPES`` with field overrides."""

    recipe: str = "cifar10-resnet"
    overrides: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterConfig:
    k: int = 4
    features: str = "classifier"     # "classifier" (penultimate features) | "pixels" (8×8 RGB)
    levels: str | None = None        # None/flat, or "FINE:K" hierarchical
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    preset: str = "DiT-S/4"
    overrides: dict = field(default_factory=dict)  # DiTConfig fields (depth, hidden_size, ...)


@dataclass(frozen=True)
class TrainSettings:
    """Per-expert optimisation; an expert with ``compute: c`` trains ``c × steps`` steps on the same batch.

    Training seed s fixes an expert's initial weights, data order and noise; with ``seeds`` every expert
    (and the router, with seed ``router.seed + s``) is trained once per seed. ``workers`` processes share
    the device and each trains whole experts, so an expert's steps, batches and seed are those of a run
    alone; ``budget_s`` is then spread over the processes (``experts.fit_steps``), still as a step count.
    """

    steps: int = 1000
    budget_s: float | None = None    # if set: steps fitted to this wall time from measured s/step, same for all
    batch_size: int = 256
    lr: float = 2e-4
    warmup_steps: int = 100
    ema_decay: float = 0.9999
    grad_clip: float = 1.0
    seed: int = 0
    seeds: tuple[int, ...] = ()      # training seeds; () = (seed,)
    compile: bool = False            # torch.compile every DiT block (all experts alike); eager if it fails
    workers: int = 1                 # expert-training processes on the device; 1 = in this process

    @property
    def training_seeds(self) -> tuple[int, ...]:
        return self.seeds or (self.seed,)


@dataclass(frozen=True)
class ExpertConfig:
    name: str
    objective: str = "fm"
    schedule: str = "flow-linear"
    cluster: int | None = None       # None: all training data (a monolithic model)
    compute: float = 1.0             # multiple of the per-expert steps (the monolithic model gets K)


@dataclass(frozen=True)
class RouterTrain:
    preset: str = "DiT-S/4"
    steps: int = 1000
    batch_size: int = 256
    lr: float = 3e-4
    seed: int = 0


@dataclass(frozen=True)
class SamplingConfig:
    n: int = 2000                    # images per configuration and seed
    steps: int = 25
    solver: str = "heun"
    seeds: tuple[int, ...] = (0, 1)  # every configuration sees the same noise for the same seed
    batch: int = 1000
    ddim_steps: int | None = None    # native sampler steps; None: the ensemble solver's NFE (Heun: 2·steps − 1)


@dataclass(frozen=True)
class RouterSpec:
    kind: str = "learned"
    tau: float | None = None
    low: tuple[str, ...] = ()        # threshold: experts for t ≤ τ
    high: tuple[str, ...] = ()       # threshold: experts for t > τ


@dataclass(frozen=True)
class EnsembleConfig:
    name: str
    experts: tuple[str, ...]
    router: RouterSpec = RouterSpec("none")
    mode: str = "top-k"
    k: int = 2
    sampler: str = "ensemble"
    reference: str = "test"          # "test" (all 10k) | "cluster:<j>" (test images nearest centroid j)
    group: str = "main"


@dataclass(frozen=True)
class ThresholdSweep:
    name: str
    ddpm: str
    fm: str
    taus: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.7)
    orderings: tuple[str, ...] = ORDERINGS
    reference: str = "test"
    group: str = "threshold"


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: the summary reports a − b per training seed, paired by sampling seed."""

    a: str
    b: str


@dataclass(frozen=True)
class LossCurveConfig:
    experts: tuple[str, ...] = ()
    reference: str = "cluster:0"
    n: int = 1000
    points: int = 25


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    data: DataConfig
    experts: tuple[ExpertConfig, ...]
    ensembles: tuple[EnsembleConfig, ...]
    classifier: ClassifierConfig = ClassifierConfig()
    clusters: ClusterConfig = ClusterConfig()
    model: ModelConfig = ModelConfig()
    train: TrainSettings = TrainSettings()
    router: RouterTrain = RouterTrain()
    sampling: SamplingConfig = SamplingConfig()
    threshold_sweeps: tuple[ThresholdSweep, ...] = ()
    loss_curves: LossCurveConfig = LossCurveConfig()
    comparisons: tuple[Comparison, ...] = ()
    budget_s: float | None = None    # wall-clock limit: evaluations not started by then are reported as skipped

    def expert(self, name: str) -> ExpertConfig:
        return next(e for e in self.experts if e.name == name)

    def all_ensembles(self) -> tuple[EnsembleConfig, ...]:
        """The listed ensembles, then every threshold sweep expanded (one ensemble per ordering and τ)."""
        return self.ensembles + tuple(e for s in self.threshold_sweeps for e in expand_sweep(s))

    def all_comparisons(self) -> tuple[Comparison, ...]:
        """The listed comparisons, then FM→DDPM vs DDPM→FM at every τ of every sweep with both orderings."""
        swept = tuple(Comparison(f"{s.name}-fm-first-tau{tau:g}", f"{s.name}-ddpm-first-tau{tau:g}")
                      for s in self.threshold_sweeps if set(ORDERINGS) <= set(s.orderings) for tau in s.taus)
        return self.comparisons + swept


def expand_sweep(s: ThresholdSweep) -> list[EnsembleConfig]:
    """ThresholdRouter ensembles of one DDPM and one FM expert; ``fm-first`` = FM at high noise (t > τ)."""
    out = []
    for tau in s.taus:  # τ-major, so a budget cut leaves both orderings measured at the smaller thresholds
        for order in s.orderings:
            low, high = ((s.ddpm,), (s.fm,)) if order == "fm-first" else ((s.fm,), (s.ddpm,))
            out.append(EnsembleConfig(f"{s.name}-{order}-tau{tau:g}", (s.ddpm, s.fm),
                                      RouterSpec("threshold", float(tau), low, high), mode="top-1",
                                      reference=s.reference, group=s.group))
    return out


# -- strict construction from plain data --------------------------------------------------------------
def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        return _convert(next(a for a in get_args(tp) if a is not type(None)), value, where)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"{where} must be a list, got {type(value).__name__}")
        inner = get_args(tp)[0]
        return tuple(_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expect = dict if origin is dict else tp
    if expect in (int, float, str, bool, dict) and (not isinstance(value, expect) or
                                                     (expect is int and isinstance(value, bool))):
        raise SpecError(f"{where} must be {expect.__name__}, got {value!r}")
    return value


def build(cls, data: Any, where: str):
    """``cls(**data)`` with nested dataclasses, tuples and type checks; unknown or missing keys are errors."""
    if isinstance(cls, str) or not dataclasses.is_dataclass(cls):
        raise TypeError(cls)
    if not isinstance(data, dict):
        raise SpecError(f"{where} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SpecError(f"unknown key {where}.{unknown[0]}; valid keys: {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise SpecError(f"{where} needs {missing[0]!r}")
    return cls(**{k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()})


def _router_spec(value: Any, where: str) -> dict:
    """``router: learned`` (a bare kind) or a mapping ``{kind: threshold, tau: 0.3, low: [...], high: [...]}``."""
    return {"kind": value} if isinstance(value, str) else value


def parse_config(data: Any, source: str = "config") -> ExperimentConfig:
    """Validate plain data (from YAML) into an ``ExperimentConfig``; SpecError names the first problem."""
    if not isinstance(data, dict):
        raise SpecError(f"{source} must be a YAML mapping at the top level")
    data = dict(data)
    if isinstance(data.get("train"), dict) and {"seed", "seeds"} <= set(data["train"]):
        raise SpecError(f"{source}: give train.seed or train.seeds, not both")
    ens = data.get("ensembles", [])
    if isinstance(ens, list):
        data["ensembles"] = [{**e, "router": _router_spec(e["router"], "")} if isinstance(e, dict) and "router" in e
                             else e for e in ens]
    cfg = build(ExperimentConfig, data, source)
    validate(cfg)
    return cfg


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a YAML experiment config."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise SpecError(f"experiment config {p} does not exist") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise SpecError(f"{p} is not valid YAML{at}; fix the syntax") from None
    return parse_config(data, p.name)


# -- semantic checks ------------------------------------------------------------------------------------
def validate(cfg: ExperimentConfig) -> None:
    """Every name resolves, every value is in range; raises SpecError on the first problem."""
    from hddm_p2p.eval.classifier import get_recipe

    get_recipe(cfg.classifier.recipe)
    if cfg.clusters.features not in ("classifier", "pixels"):
        raise SpecError(f"clusters.features must be classifier or pixels, got {cfg.clusters.features!r}")
    if cfg.clusters.k < 2:
        raise SpecError(f"clusters.k must be at least 2, got {cfg.clusters.k}")
    get_preset(cfg.model.preset, **cfg.model.overrides)
    get_preset(cfg.router.preset)
    if cfg.sampling.solver not in ("euler", "heun") or cfg.sampling.n < 2 or not cfg.sampling.seeds:
        raise SpecError("sampling needs solver euler|heun, n ≥ 2 and at least one seed")
    _validate_training(cfg)
    _validate_experts(cfg)
    for s in cfg.threshold_sweeps:
        bad = [o for o in s.orderings if o not in ORDERINGS]
        if bad:
            raise SpecError(f"threshold sweep {s.name!r}: unknown ordering {bad[0]!r}; choose {', '.join(ORDERINGS)}")
    names = {e.name for e in cfg.experts}
    seen: set[str] = set()
    for e in cfg.all_ensembles():
        if e.name in seen:
            raise SpecError(f"two ensembles are named {e.name!r}; names must be unique")
        seen.add(e.name)
        _validate_ensemble(cfg, e, names)
    for n in cfg.loss_curves.experts:
        if n not in names:
            raise SpecError(f"loss_curves names unknown expert {n!r}; known experts: {', '.join(sorted(names))}")
    _reference(cfg.loss_curves.reference, cfg.clusters.k, "loss_curves")
    for c in cfg.comparisons:
        for n in (c.a, c.b):
            if n not in seen:
                raise SpecError(f"comparison {c.a} vs {c.b} names unknown ensemble {n!r}")


def _validate_training(cfg: ExperimentConfig) -> None:
    t = cfg.train
    if len(set(t.training_seeds)) != len(t.training_seeds):
        raise SpecError(f"train.seeds must be distinct, got {list(t.seeds)}")
    if t.workers < 1:
        raise SpecError(f"train.workers must be at least 1, got {t.workers}")
    if t.budget_s is not None and not t.budget_s > 0:
        raise SpecError(f"train.budget_s must be positive, got {t.budget_s}")


def _validate_experts(cfg: ExperimentConfig) -> None:
    seen: set[str] = set()
    for e in cfg.experts:
        if e.name in seen:
            raise SpecError(f"two experts are named {e.name!r}; names must be unique")
        seen.add(e.name)
        Objective.parse(e.objective)
        get_schedule(e.schedule)
        if e.cluster is not None and not 0 <= e.cluster < cfg.clusters.k:
            raise SpecError(f"expert {e.name!r}: cluster {e.cluster} is outside 0..{cfg.clusters.k - 1}")
        if not e.compute > 0:
            raise SpecError(f"expert {e.name!r}: compute must be positive")


def _reference(ref: str, k: int, where: str) -> int | None:
    """None for the whole test set, j for ``cluster:j``."""
    if ref == "test":
        return None
    head, _, j = ref.partition(":")
    if head != "cluster" or not j.isdigit() or int(j) >= k:
        raise SpecError(f"{where}: reference must be 'test' or 'cluster:<0..{k - 1}>', got {ref!r}")
    return int(j)


def _validate_ensemble(cfg: ExperimentConfig, e: EnsembleConfig, names: set[str]) -> None:
    where = f"ensemble {e.name!r}"
    for n in e.experts + e.router.low + e.router.high:
        if n not in names:
            raise SpecError(f"{where} names unknown expert {n!r}; known experts: {', '.join(sorted(names))}")
    if e.router.kind not in ROUTERS:
        raise SpecError(f"{where} names unknown router {e.router.kind!r}; choose one of: {', '.join(ROUTERS)}")
    if e.sampler not in SAMPLERS:
        raise SpecError(f"{where} names unknown sampler {e.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    Mode.parse(e.mode)
    _reference(e.reference, cfg.clusters.k, where)
    kind = e.router.kind
    if (kind == "none" or e.sampler == "ddim") and len(e.experts) != 1:
        raise SpecError(f"{where}: router none / sampler ddim take exactly one expert, got {len(e.experts)}")
    if kind == "learned":
        clusters = sorted(cfg.expert(n).cluster for n in e.experts if cfg.expert(n).cluster is not None)
        if clusters != list(range(cfg.clusters.k)):
            raise SpecError(f"{where}: a learned router needs one expert per cluster 0..{cfg.clusters.k - 1}")
    if kind == "threshold":
        if e.router.tau is None or not 0 <= e.router.tau <= 1 or not e.router.low or not e.router.high:
            raise SpecError(f"{where}: a threshold router needs tau in [0, 1] and non-empty low and high experts")
        if not set(e.router.low + e.router.high) <= set(e.experts):
            raise SpecError(f"{where}: threshold low/high experts must be among the ensemble's experts")
