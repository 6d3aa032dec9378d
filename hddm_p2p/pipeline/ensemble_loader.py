"""From a lock file to a ready ``hddm_p2p.Ensemble`` of lazily loaded experts.

Every member is re-verified (``lockfile.verify_member``); each expert's ``ExpertSpec`` comes from its
signed manifest alone — prediction, schedule, ``time_scale``, and ``clip`` = max |value_range| of its data
space (1 for pixels in [−1, 1], 20 for SD latents) — so nothing on the command line says which expert is
DDPM. Weights are read only when the router first sends a sample to an expert (``LazyExpert``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hddm_p2p.diffusion import Ensemble, ExpertSpec
from hddm_p2p.errors import IntegrityError, ManifestError, SpecError
from hddm_p2p.models.loading import load_weights, read_arch
from hddm_p2p.p2p.cache import Cache
from hddm_p2p.p2p.cid import cid_of_bytes
from hddm_p2p.p2p.manifests import EnsembleLock, ExpertManifest, RouterManifest, verify_signature
from hddm_p2p.p2p.signing import parse_json
from hddm_p2p.p2p.trust import TrustStore
from hddm_p2p.pipeline.lazy import LazyExpert
from hddm_p2p.pipeline.lockfile import WEIGHTS, check_file, read_lock, sha256_file, verify_member
from hddm_p2p.pipeline.routers import ReorderedRouter, threshold_params, threshold_router, uniform_router

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise SpecError(f"unknown --dtype {name!r}; choose {' or '.join(DTYPES)}")
    return DTYPES[name]


def spec_from_manifest(m: ExpertManifest) -> ExpertSpec:
    """How to read this expert's output, from its manifest only."""
    lo, hi = m.data_space.value_range
    return ExpertSpec(m.prediction, m.schedule, time_scale=m.time_scale, clip=max(abs(lo), abs(hi)))


@dataclass
class LoadedEnsemble:
    """An assembled ensemble: verified manifests, lazy experts (in lock order), and the lock's router."""

    lock: EnsembleLock
    lock_sha256: str
    manifests: list[ExpertManifest]
    specs: list[ExpertSpec]
    experts: list[LazyExpert]
    router: Any
    router_label: str

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.manifests]

    @property
    def data_space(self):
        return self.manifests[0].data_space

    @property
    def conditioning(self):
        return self.manifests[0].conditioning

    def ensemble(self, mode: str, k: int) -> Ensemble:
        return Ensemble(list(zip(self.experts, self.specs)), self.router, mode=mode, k=k)

    def use_threshold(self, tau: float) -> None:
        """Replace the lock's router by the FM-high / converted-low threshold router at ``tau``."""
        params = threshold_params(tau, [m.prediction for m in self.manifests], self.names)
        self.router, self.router_label = threshold_router(params, len(self.experts)), f"threshold:{tau:g}"


def _expert(m: ExpertManifest, weights: Path, device: str, dtype: torch.dtype | None, offload: bool,
            compile: bool = False) -> LazyExpert:
    arch = read_arch(weights).to_dict()  # the header only; the weights stay on disk
    if {k: arch.get(k) for k in m.architecture.config} != m.architecture.config:
        raise ManifestError(f"expert {m.name!r}: the architecture in its weights differs from its signed manifest")
    return LazyExpert(weights, load_weights, device=device, dtype=dtype, offload=offload, compile=compile)


def _router(lock: EnsembleLock, lock_path: Path, cache: Cache, trust: TrustStore, device: str):
    r, n, ids = lock.router, len(lock.members), [m.manifest_cid for m in lock.members]
    if r.kind == "uniform":
        return uniform_router(n), "uniform"
    if r.kind == "threshold":
        return threshold_router(r.params, n), f"threshold:{r.params['tau']:g}"
    from hddm_p2p.models.router import load_router, load_router_weights

    if r.kind == "local":
        weights = lock_path.parent / str(r.params.get("path", "")) / WEIGHTS
        check_file(weights, r.sha256, None, "the ensemble's trained router",
                   "train it again with `hddm assemble --router train`")
        loaded, _ = load_router(weights.parent, device)
        return ReorderedRouter(loaded, loaded.experts, ids), f"trained ({weights.parent.name})"
    manifest, weights = _verify_router(r.manifest_cid, cache, trust)
    loaded = load_router_weights(weights, manifest.experts, device)
    return ReorderedRouter(loaded, manifest.experts, ids), f"{manifest.name} ({r.manifest_cid[:12]}…)"


def _verify_router(cid: str, cache: Cache, trust: TrustStore) -> tuple[RouterManifest, Path]:
    """A router pinned by manifest CID: the cached manifest's CID, signature and standing, then its weights."""
    hint = f"run `hddm fetch {cid}` to restore it"
    path = cache.path_for(cid, "manifest.json")
    if not path.is_file() or cid_of_bytes(path.read_bytes()) != cid:
        raise IntegrityError(f"the router manifest {cid} is missing from the cache or changed; {hint}")
    m = verify_signature(parse_json(path.read_bytes()))
    if not isinstance(m, RouterManifest):
        raise ManifestError(f"{cid} is a {m.schema_} manifest, not a router")
    trust.check(m, cid, allow_untrusted=True, allow_downgrade=True)
    a = m.artifact(WEIGHTS)
    return m, check_file(cache.path_for(a.cid, a.name), a.sha256, a.size, f"weights of router {m.name!r}", hint)


def load_ensemble(lock_path: Path, device: str = "cpu", dtype: str = "fp32", offload: bool = False,
                  cache: Cache | None = None, trust: TrustStore | None = None, compile: bool = False) -> LoadedEnsemble:
    """Verify everything the lock names and return the experts (not yet loaded) and router."""
    lock_path = Path(lock_path)
    lock, cache, trust = read_lock(lock_path), cache or Cache(), trust or TrustStore()
    torch_dtype = parse_dtype(dtype)
    verified = [verify_member(mem, cache, trust) for mem in lock.members]
    manifests = [v.manifest for v in verified]
    for v in verified:
        if not isinstance(v.manifest, ExpertManifest):
            raise ManifestError(f"lock member {v.member.name!r} is a {v.manifest.schema_} manifest, not an expert")
    specs = [spec_from_manifest(m) for m in manifests]
    experts = [_expert(v.manifest, v.weights, device, None if dtype == "fp32" else torch_dtype, offload, compile)
               for v in verified]
    router, label = _router(lock, lock_path, cache, trust, device)
    return LoadedEnsemble(lock, sha256_file(lock_path), manifests, specs, experts, router, label)
