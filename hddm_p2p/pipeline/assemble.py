"""``assemble``: published experts → a verified, compatible ensemble pinned in a lock file.

    sources (CIDs | catalog | folder) ─fetch_manifest─▶ verified manifests + artifacts in the cache
        ─check_compatible (manifests only)─▶ router (train here | fetch + match | threshold | uniform)
        ─▶ EnsembleLock written atomically

>>> result = assemble(AssembleConfig(experts=("bafy…", "bafy…"), router="threshold:0.5", out=Path("e.lock.json")))
>>> result.lock.members[0].manifest_cid
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hddm_p2p.errors import CompatibilityError, DataError, ManifestError, SpecError
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.fetch import fetch_manifest
from hddm_p2p.p2p.manifests import EnsembleLock, ExpertManifest, RouterManifest, validate
from hddm_p2p.p2p.store import open_store
from hddm_p2p.p2p.store.base import Store
from hddm_p2p.p2p.trust import TrustStore
from hddm_p2p.pipeline import sources as src
from hddm_p2p.pipeline.compat import check_compatible, check_router_matches
from hddm_p2p.pipeline.lockfile import WEIGHTS, sha256_file, write_lock
from hddm_p2p.pipeline.routers import RouterChoice, threshold_params


@dataclass(frozen=True)
class AssembleConfig:
    """One ``hddm assemble`` run; exactly one of ``experts``, ``catalog``, ``directory`` names the experts."""

    out: Path = Path("ensemble.lock.json")
    experts: tuple[str, ...] = ()
    catalog: str | None = None
    directory: Path | None = None
    router: str = "uniform"
    data: str | None = None  # local images for --router train
    store: str = "local"
    ipfs_api: str | None = None
    allow_untrusted: bool = False
    key: str | None = None  # signs unpublished expert directories found by --dir
    passphrase: str | None = None
    name: str | None = None
    router_steps: int = 300
    router_preset: str = "tiny"
    router_batch_size: int = 64
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def check(self) -> RouterChoice:
        given = [n for n, v in (("--experts", self.experts), ("--catalog", self.catalog),
                                ("--dir", self.directory)) if v]
        if len(given) != 1:
            raise SpecError("name the experts with exactly one of --experts CID…, --catalog NAME_OR_CID or --dir DIR"
                            + (f" (got {', '.join(given)})" if given else ""))
        choice = RouterChoice.parse(self.router)
        if choice.kind == "train" and not self.data:
            raise SpecError("--router train needs --data (local images to label with the experts' centroids)")
        if not self.out.name.endswith(".json"):
            raise SpecError(f"--out {self.out} should be a .json file, e.g. ensemble.lock.json")
        return choice


@dataclass
class AssembleResult:
    lock: EnsembleLock
    path: Path
    manifests: list[ExpertManifest]
    router_detail: dict[str, Any] = field(default_factory=dict)
    published: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"lock": str(self.path), "members": [m.to_doc() for m in self.lock.members],
                "router": self.lock.router.to_doc(), "router_detail": self.router_detail,
                "published": [{"dir": d, "cid": c} for d, c in self.published], "timings_s": self.timings}


def router_dir_for(lock_path: Path) -> Path:
    """Where ``--router train`` keeps its router: beside the lock, ``NAME.router/``."""
    return lock_path.with_name(lock_path.name.removesuffix(".json").removesuffix(".lock") + ".router")


def _sources(cfg: AssembleConfig, store: Store, trust: TrustStore) -> src.Sources:
    if cfg.experts:
        return src.from_cids(list(cfg.experts))
    if cfg.catalog:
        return src.from_catalog(store, cfg.catalog, trust, cfg.allow_untrusted)
    return src.from_dir(Path(cfg.directory), store, trust, cfg.allow_untrusted, cfg.key, cfg.passphrase, cfg.progress)


def fetch_experts(store: Store, found: src.Sources, trust: TrustStore, cache: Cache, cfg: AssembleConfig):
    """Fetch + verify every manifest and artifact; the local key's own fresh manifests count as trusted."""
    out = []
    for cid in found.cids:
        m, paths = fetch_manifest(store, cid, trust, cache=cache, progress=cfg.progress,
                                  allow_untrusted=cfg.allow_untrusted or cid in found.own)
        if not isinstance(m, ExpertManifest):
            raise ManifestError(f"{cid} is a {m.schema_} manifest ({m.name}), not an expert; pass routers with --router")
        out.append((cid, m, paths))
    return out


def _train_router(cfg: AssembleConfig, manifests: list[ExpertManifest], cids: list[str]) -> tuple[dict, dict]:
    from hddm_p2p.train.router import RouterTrainConfig, train_router_for_experts

    out = router_dir_for(cfg.out)
    rcfg = RouterTrainConfig(preset=cfg.router_preset, steps=cfg.router_steps, batch_size=cfg.router_batch_size,
                             seed=cfg.seed, device=cfg.device, name=cfg.out.name.split(".")[0] + "-router")
    desc = train_router_for_experts([m.to_doc() for m in manifests], cids, cfg.data, out, rcfg)
    rel = out.name  # resolved against the lock file's folder, so lock + router move together
    params = {"path": rel, "preset": cfg.router_preset, "steps": cfg.router_steps, "data": str(cfg.data),
              "feature_extractor": desc["feature_extractor"]}
    detail = {"dir": str(out), "accuracy_by_t": desc["accuracy_by_t"],
              "majority_rate": desc["training"]["majority_rate"]}
    return {"kind": "local", "params": params, "sha256": sha256_file(out / WEIGHTS)}, detail


def _fetch_router(choice: RouterChoice, store: Store, trust: TrustStore, cache: Cache, cfg: AssembleConfig,
                  manifests: list[ExpertManifest], cids: list[str]) -> tuple[dict, dict]:
    m, _ = fetch_manifest(store, choice.cid, trust, cache=cache, allow_untrusted=cfg.allow_untrusted,
                          progress=cfg.progress)
    if not isinstance(m, RouterManifest):
        raise ManifestError(f"--router {choice.cid} is a {m.schema_} manifest, not a router")
    check_router_matches(m.experts, cids)
    if m.data_space != manifests[0].data_space:
        raise CompatibilityError(f"router {m.name!r} was trained on data_space {m.data_space.to_doc()}, the experts "
                                 f"live in {manifests[0].data_space.to_doc()}")
    return {"kind": "cid", "manifest_cid": choice.cid}, {"name": m.name, "publisher": m.publisher}


def build_router(choice: RouterChoice, store: Store, trust: TrustStore, cache: Cache, cfg: AssembleConfig,
                 manifests: list[ExpertManifest], cids: list[str]) -> tuple[dict, dict]:
    """The lock's ``router`` object (and details for the summary) for a parsed ``--router``."""
    if choice.kind == "uniform":
        return {"kind": "uniform", "params": {}}, {}
    if choice.kind == "threshold":
        params = threshold_params(choice.tau, [m.prediction for m in manifests], [m.name for m in manifests])
        return {"kind": "threshold", "params": params}, {}
    if len(manifests) < 2:
        raise CompatibilityError("a trained router needs at least 2 experts; use --router uniform for one expert")
    if choice.kind == "train":
        return _train_router(cfg, manifests, cids)
    return _fetch_router(choice, store, trust, cache, cfg, manifests, cids)


def member(cid: str, m: ExpertManifest) -> dict[str, Any]:
    return {"role": "expert", "manifest_cid": cid, "name": m.name, "publisher": m.publisher,
            "artifacts": [{"name": a.name, "cid": a.cid, "sha256": a.sha256, "size": a.size} for a in m.artifacts]}


def assemble(cfg: AssembleConfig, store: Store | None = None) -> AssembleResult:
    """Fetch, verify and check the experts, build the router, and write the lock; see the module docstring."""
    choice = cfg.check()
    cfg = replace(cfg, out=Path(cfg.out))
    store = store or open_store(cfg.store, cfg.ipfs_api)
    trust, cache, timings = TrustStore(), Cache(), {}
    t0 = time.perf_counter()
    found = _sources(cfg, store, trust)
    fetched = fetch_experts(store, found, trust, cache, cfg)
    cids, manifests = [c for c, _, _ in fetched], [m for _, m, _ in fetched]
    if len(set(cids)) != len(cids):
        raise DataError("the same expert manifest appears twice; name each expert once")
    check_compatible(manifests, [f"{m.name} ({c[:12]}…)" for c, m in zip(cids, manifests)])
    timings["fetch_verify"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    router, detail = build_router(choice, store, trust, cache, cfg, manifests, cids)
    timings["router"] = time.perf_counter() - t0
    doc = {"schema": "hddm.lock/1", "name": cfg.name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "members": [member(c, m) for c, m in zip(cids, manifests)], "router": router}
    lock = validate(doc, EnsembleLock)
    path = write_lock(cfg.out, lock)
    return AssembleResult(lock, path, manifests, detail, found.published, timings)
