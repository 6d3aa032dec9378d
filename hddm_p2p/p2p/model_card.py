"""A human-readable model card (``README.md``) generated from a manifest, as Hugging Face model cards are:
YAML front matter (license, tags, pipeline_tag) then a prose summary and a table of the facts that matter
for combining the expert with others. The card is published as an artifact of the manifest it describes,
so its bytes are covered by the signature like the weights are.
"""

from __future__ import annotations

import yaml

from hddm_p2p.p2p.manifests import ExpertManifest, Published, RouterManifest

CARD_NAME = "README.md"
CARD_MEDIA_TYPE = "text/markdown"
_OBJECTIVE_TAG = {"ddpm": "ddpm", "fm": "flow-matching", "x0": "x0-prediction", "v": "v-prediction"}
_PIPELINE = {"none": "unconditional-image-generation", "class": "unconditional-image-generation",
             "text": "text-to-image"}


def _front_matter(m: Published) -> str:
    tags = ["hddm", "diffusion", "decentralized-diffusion"]
    if isinstance(m, ExpertManifest):
        tags += [_OBJECTIVE_TAG[m.objective], m.schedule, f"{m.data_space.kind}-space", m.architecture.family]
        if m.conditioning.kind != "none":
            tags.append(f"{m.conditioning.kind}-conditional")
        pipeline = _PIPELINE[m.conditioning.kind]
    else:
        tags += ["router", m.feature_extractor]
        pipeline = "image-classification"
    meta = {"license": m.license, "library_name": "hddm-p2p", "pipeline_tag": pipeline, "tags": tags}
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def _table(rows: list[tuple[str, object]], header: str = "| field | value |") -> str:
    lines = [header, "| --- | --- |"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _expert_body(m: ExpertManifest) -> str:
    ds, c = m.data_space, m.conditioning
    space = f"{ds.kind} space ({ds.channels}×{ds.resolution}×{ds.resolution}"
    space += f", VAE `{ds.vae.id}`)" if ds.vae else ")"
    summary = (f"**{m.name}** is a diffusion expert trained with the `{m.objective}` objective on the "
               f"`{m.schedule}` schedule; it predicts `{m.prediction}` in {space}, conditioning: {c.kind}. "
               "It can be combined with experts of other objectives and schedules by converting every output "
               "to one velocity space (hddm-p2p `Ensemble`).")
    rows: list[tuple[str, object]] = [
        ("version", m.version), ("publisher", f"`{m.publisher}`"), ("prediction", m.prediction),
        ("schedule", m.schedule), ("time_scale", m.time_scale),
        ("architecture", f"{m.architecture.family} {m.architecture.preset or ''}".strip()),
        ("value range", list(ds.value_range)), ("training steps", m.training.steps),
        ("images seen", m.training.images_seen), ("final loss", m.training.final_loss),
        ("dataset", m.training.dataset)]
    if m.cluster is not None:
        rows += [("cluster", f"{m.cluster.id} ({m.cluster.size} images, {m.cluster.feature_extractor}, "
                             f"{m.cluster.feature_dim}-d centroid)")]
    return summary + "\n\n" + _table(rows)


def _router_body(m: RouterManifest) -> str:
    summary = (f"**{m.name}** is a router: given a noisy sample and time it scores {len(m.experts)} experts "
               f"(logits column j is `experts[j]`), trained on the `{m.path}` path with `{m.feature_extractor}`.")
    rows: list[tuple[str, object]] = [("version", m.version), ("publisher", f"`{m.publisher}`")]
    rows += [(f"expert {j}", f"`{e}`") for j, e in enumerate(m.experts)]
    return summary + "\n\n" + _table(rows)


def render_card(m: Published) -> str:
    """The README.md text for ``m`` (its artifacts other than the card itself are listed)."""
    body = _expert_body(m) if isinstance(m, ExpertManifest) else _router_body(m)
    files = _table([(a.name, f"`{a.cid}` ({a.size} bytes, sha256 `{a.sha256[:16]}…`)")
                    for a in m.artifacts if a.name != CARD_NAME], header="| file | content |")
    return (f"{_front_matter(m)}\n# {m.name}\n\n{body}\n## Files\n\n{files}\n"
            "Verify before use: `hddm fetch <manifest CID>` checks the signature, the trust policy, "
            "and every file's size, sha256 and CID.\n")
