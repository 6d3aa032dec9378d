"""JSON Schemas of the manifest models (``manifests/*.schema.json`` are generated from these; a test checks drift)."""

from __future__ import annotations

import json
from typing import Any

from hddm_p2p.p2p.manifests import SCHEMAS

_BASE_URL = "https://hddm-p2p.invalid/schemas"  # an identifier, never fetched


def file_name(schema_id: str) -> str:
    """``hddm.expert/1`` → ``expert-1.schema.json``."""
    kind, version = schema_id.removeprefix("hddm.").split("/")
    return f"{kind}-{version}.schema.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name → JSON Schema (draft 2020-12) for every manifest schema id."""
    out = {}
    for schema_id, model in sorted(SCHEMAS.items()):
        body = model.model_json_schema(by_alias=True, mode="validation")
        out[file_name(schema_id)] = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                     "$id": f"{_BASE_URL}/{file_name(schema_id)}", **body}
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"
