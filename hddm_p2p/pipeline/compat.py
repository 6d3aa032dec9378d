"""Can these experts be combined? Decided from their manifests alone, before any weight is read."""

from __future__ import annotations

from typing import Any, Sequence

from hddm_p2p.errors import CompatibilityError


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# Fields every expert of one ensemble must share: they define the space the velocities live in
# (data space, resolution, channels, VAE) and what a condition means (kind, classes, text encoder).
SHARED_FIELDS = (
    "data_space.kind",
    "data_space.resolution",
    "data_space.channels",
    "data_space.vae.id",
    "data_space.vae.scaling_factor",
    "conditioning.kind",
    "conditioning.num_classes",
    "conditioning.text_encoder.id",
    "conditioning.text_encoder.width",
)


def check_compatible(experts: Sequence[Any], names: Sequence[str] | None = None) -> None:
    """Raise ``CompatibilityError`` naming the first expert and field that differ from expert 0.

    ``experts`` are expert descriptions (manifests, ``ExpertDescription`` or ``expert.json`` dicts).
    """
    if not experts:
        raise CompatibilityError("no experts given; name at least one with --experts, --catalog or --dir")
    names = list(names or [_get(e, "name") or f"expert {i}" for i, e in enumerate(experts)])
    ref = experts[0]
    for i, e in enumerate(experts[1:], start=1):
        for field in SHARED_FIELDS:
            a, b = _get(ref, field), _get(e, field)
            if a != b:
                raise CompatibilityError(
                    f"expert {names[i]!r} cannot join {names[0]!r}: {field} is {b!r}, expected {a!r} "
                    f"(all experts must share data space, resolution, VAE and conditioning)")


def check_router_matches(router_experts: Sequence[str], expert_ids: Sequence[str]) -> None:
    """A published router's output columns must name exactly these experts, in any order."""
    missing = [e for e in expert_ids if e not in router_experts]
    extra = [e for e in router_experts if e not in expert_ids]
    if missing or extra:
        raise CompatibilityError(
            f"router does not match the ensemble: missing {missing or 'none'}, unknown {extra or 'none'}; "
            "train one with --router train or pick a router published for these experts")
