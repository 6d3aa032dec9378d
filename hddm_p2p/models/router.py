"""Router: a DiT-shaped classifier p(k | x_t, t) over noisy inputs on the ensemble's flow-linear path.

    x_t = (1 − t)·x0 + t·ε,  t ∈ [0, 1]          (flow-linear, t = 1 pure noise)
    logits = Router(x_t, t)  (B, K)             column j belongs to ``experts[j]`` of router.json

The trunk is DiT's (``PatchEmbed`` → sincos positions → AdaLN-Zero ``DiTBlock``s conditioned on the
time embedding of 1000·t); the head is an AdaLN-modulated LayerNorm, a mean over tokens and
Linear(D, K). Presets come from the DiT registry (``tiny`` for tests, ``DiT-B/2`` ≈ 129M parameters
as in the decentralized-diffusion router). A router directory holds ``model.safetensors`` (metadata
``{"hddm.format": "hddm-router/1", "hddm.arch": <RouterConfig JSON>}``) and ``router.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hddm_p2p.errors import CompatibilityError, ManifestError, SpecError
from hddm_p2p.models.dit import get_preset
from hddm_p2p.models.layers import DiTBlock, PatchEmbed, TimestepEmbedder, modulate, sincos_pos_embed

Tensor = torch.Tensor
FORMAT = "hddm-router/1"
WEIGHTS, DESCRIPTION = "model.safetensors", "router.json"


@dataclass(frozen=True)
class RouterConfig:
    """Everything needed to rebuild a router; stored as JSON in its safetensors metadata."""

    num_experts: int
    input_size: int = 32
    in_channels: int = 3
    patch_size: int = 2
    hidden_size: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    time_scale: float = 1000.0  # the time embedder sees 1000·t, DiT's range
    preset: str | None = None

    def __post_init__(self):
        if self.num_experts < 2:
            raise SpecError(f"a router needs at least 2 experts, got {self.num_experts}")
        if self.input_size % self.patch_size or self.hidden_size % self.num_heads or self.hidden_size % 4:
            raise SpecError(f"invalid router shape: input_size {self.input_size} / patch {self.patch_size}, "
                            f"hidden {self.hidden_size} / heads {self.num_heads}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "RouterConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SpecError(f"unknown router config fields: {', '.join(sorted(unknown))}")
        return cls(**d)


def router_preset(name: str, num_experts: int, **overrides) -> RouterConfig:
    """A router shaped like DiT preset ``name`` (``tiny``, ``DiT-S/2``, ``DiT-B/2``, ...)."""
    dit = get_preset(name)
    return RouterConfig(num_experts, patch_size=dit.patch_size, hidden_size=dit.hidden_size, depth=dit.depth,
                        num_heads=dit.num_heads, mlp_ratio=dit.mlp_ratio, preset=name, **overrides)


class ClassifierHead(nn.Module):
    """Modulated LayerNorm of the tokens, mean over tokens, Linear(D, K)."""

    def __init__(self, dim: int, num_experts: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.linear = nn.Linear(dim, num_experts)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)  # (B, D) each
        return self.linear(modulate(self.norm(x), shift, scale).mean(1))  # (B, T, D) → (B, K)


class Router(nn.Module):
    """``forward(x_t (B, C, H, W), t (B,) or scalar in [0, 1]) -> logits (B, K)``."""

    def __init__(self, config: RouterConfig):
        super().__init__()
        self.config = c = config
        D = c.hidden_size
        self.x_embedder = PatchEmbed(c.patch_size, c.in_channels, D)
        self.t_embedder = TimestepEmbedder(D)
        self.register_buffer("pos_embed", sincos_pos_embed(D, c.input_size // c.patch_size)[None])  # (1, T, D)
        self.blocks = nn.ModuleList(DiTBlock(D, c.num_heads, c.mlp_ratio, adaln="zero") for _ in range(c.depth))
        self.head = ClassifierHead(D, c.num_experts)
        self._init_weights()

    def _init_weights(self) -> None:
        """DiT's init: xavier linears, zero biases, N(0, 0.02) time MLP, zero AdaLN-Zero gates, zero head."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for layer in (self.t_embedder.mlp[0], self.t_embedder.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.head.linear.weight)

    def forward(self, x: Tensor, t: Tensor | float) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).reshape(-1).expand(x.shape[0])  # (B,)
        c = self.t_embedder(t * self.config.time_scale)  # (B, D)
        h = self.x_embedder(x) + self.pos_embed.to(x.dtype)  # (B, T, D)
        for block in self.blocks:
            h = block(h, c)
        return self.head(h, c)  # (B, K)


def save_router(out: Path, model: Router, description: dict) -> Path:
    """Write ``model.safetensors`` then ``router.json`` into ``out`` atomically; returns ``out``."""
    from safetensors.torch import save_file

    if len(description["experts"]) != model.config.num_experts:
        raise SpecError(f"router has {model.config.num_experts} outputs but {len(description['experts'])} experts")
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k != "pos_embed"}
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(tensors, str(tmp), metadata={"hddm.format": FORMAT, "hddm.arch": model.config.to_json()})
    os.replace(tmp, out / WEIGHTS)
    tmp = out / f".{DESCRIPTION}.tmp"
    tmp.write_text(json.dumps(description, indent=2) + "\n")
    os.replace(tmp, out / DESCRIPTION)
    return out


class LoadedRouter:
    """A router ready for ``Ensemble``: ``(x_t, t) -> logits (B, K)`` in ``experts`` order, no grad."""

    def __init__(self, model: Router, experts: list[str]):
        self.model, self.experts = model.eval(), list(experts)
        self.n_experts = len(experts)

    @torch.no_grad()
    def __call__(self, x_t: Tensor, t) -> Tensor:
        p = next(self.model.parameters())
        return self.model(x_t.to(p.device, p.dtype), t).float().to(x_t.device)

    def for_experts(self, expert_ids: list[str]) -> "Reordered":
        """This router with its columns reordered to ``expert_ids`` (an ensemble's expert order).

        CompatibilityError if an ensemble expert has no column here; extra router columns are dropped.
        """
        missing = [e for e in expert_ids if e not in self.experts]
        if missing:
            raise CompatibilityError(f"the router was not trained for expert {missing[0]} "
                                     f"({len(missing)} of {len(expert_ids)} missing); train one for these experts")
        return Reordered(self, [self.experts.index(e) for e in expert_ids])


class Reordered:
    """``router(x_t, t)[:, columns]``: logits in another expert order."""

    def __init__(self, router, columns: list[int]):
        self.router, self.columns, self.n_experts = router, torch.tensor(columns), len(columns)

    def __call__(self, x_t: Tensor, t) -> Tensor:
        return self.router(x_t, t)[:, self.columns.to(x_t.device)]


def load_router(path: str | Path, device: str = "cpu") -> tuple[LoadedRouter, dict]:
    """``(callable(x_t, t) -> logits (B, K), router.json description)`` from a router directory."""
    d = Path(path)
    if not (d / DESCRIPTION).exists() or not (d / WEIGHTS).exists():
        raise ManifestError(f"{d} is not a router directory (needs {WEIGHTS} and {DESCRIPTION})")
    description = json.loads((d / DESCRIPTION).read_text())
    return load_router_weights(d / WEIGHTS, description.get("experts", []), device, d, DESCRIPTION), description


def load_router_weights(weights: str | Path, experts: list[str], device: str = "cpu", where: str | Path | None = None,
                        described_by: str = "its manifest") -> LoadedRouter:
    """A router from its ``model.safetensors`` alone; ``experts`` names its logits columns (router.json or
    a router manifest)."""
    from safetensors import safe_open

    with safe_open(str(weights), "pt", device=device) as f:
        meta = f.metadata() or {}
        if meta.get("hddm.format") != FORMAT:
            raise ManifestError(f"{weights} is not an {FORMAT} file (format {meta.get('hddm.format')!r})")
        state = {k: f.get_tensor(k) for k in f.keys()}
    model = Router(RouterConfig.from_dict(json.loads(meta["hddm.arch"])))
    if model.config.num_experts != len(experts):
        raise CompatibilityError(f"{where or weights}: router has {model.config.num_experts} outputs but "
                                 f"{described_by} lists {len(experts)} experts")
    model.load_state_dict(state, strict=False)  # pos_embed is a fixed buffer, not stored
    missing = set(model.state_dict()) - set(state) - {"pos_embed"}
    if missing:
        raise ManifestError(f"{weights} lacks weights: {', '.join(sorted(missing)[:3])}")
    return LoadedRouter(model.to(device), experts)


def make_router(spec: str, expert_ids: list[str], labels: Tensor | None = None, device: str = "cpu"):
    """A router for an ensemble whose experts are ``expert_ids``, in that column order.

    ``spec``: ``uniform`` | ``threshold:TAU:LOW:HIGH`` (expert indices, comma-separated; LOW handles t ≤ TAU)
    | ``oracle`` (needs ``labels`` (B,) expert indices) | a router directory (reordered to ``expert_ids``).
    """
    from hddm_p2p.diffusion import OracleRouter, ThresholdRouter, UniformRouter

    K = len(expert_ids)
    if spec == "uniform":
        return UniformRouter(K)
    if spec == "oracle":
        if labels is None:
            raise SpecError("the oracle router needs per-sample expert labels")
        return OracleRouter(labels, K)
    if spec.startswith("threshold:"):
        try:
            tau, low, high = spec.split(":")[1:]
            return ThresholdRouter(float(tau), [int(i) for i in low.split(",")], [int(i) for i in high.split(",")], K)
        except ValueError:
            raise SpecError(f"router {spec!r}: expected threshold:TAU:LOW:HIGH, e.g. threshold:0.5:0:1") from None
    if Path(spec).is_dir():
        return load_router(spec, device)[0].for_experts(expert_ids)
    raise SpecError(f"unknown router {spec!r}; use uniform, threshold:TAU:LOW:HIGH, oracle, or a router directory")
