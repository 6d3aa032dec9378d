"""Write the JSON Schemas of the manifest models into manifests/, and (with --examples) signed example manifests.

    python scripts/gen_schemas.py              # manifests/*.schema.json (tests fail when these drift)
    python scripts/gen_schemas.py --examples   # manifests/examples/*.json, signed by a fresh throwaway key
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hddm_p2p.p2p._files import atomic_write
from hddm_p2p.p2p.cid import cid_of_bytes
from hddm_p2p.p2p.manifests import manifest_bytes, sign_manifest, validate
from hddm_p2p.p2p.manifests.schemas import json_schemas, render
from hddm_p2p.p2p.signing import did_from_key

ROOT = Path(__file__).resolve().parents[1] / "manifests"
CREATED = "2026-01-01T00:00:00Z"


def _artifact(name: str, data: bytes, media_type: str) -> dict:
    return {"name": name, "cid": cid_of_bytes(data), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "media_type": media_type}


def _expert(did: str) -> dict:
    desc = json.loads((ROOT / "examples" / "expert.description.json").read_text())
    desc.pop("kind")
    return {"schema": "hddm.expert/1", **desc, "version": 1, "created": CREATED, "publisher": did,
            "license": "apache-2.0", "artifacts": [_artifact("model.safetensors", b"example weights",
                                                             "application/x-safetensors")]}


def _router(did: str, expert_cid: str) -> dict:
    space = {"kind": "pixel", "resolution": 32, "channels": 3, "value_range": [-1.0, 1.0], "vae": None}
    return {"schema": "hddm.router/1", "name": "cifar-router", "version": 1, "created": CREATED, "publisher": did,
            "license": "apache-2.0", "architecture": {"family": "dit-classifier", "preset": "Router-S",
                                                      "config": {"depth": 4, "num_experts": 2}},
            "experts": [expert_cid, "sha256:" + "ab" * 32], "data_space": space, "path": "flow-linear",
            "feature_extractor": "pixels-8x8", "training": {"steps": 500, "final_accuracy": 0.81},
            "accuracy_by_t": [[0.1, 0.95], [0.9, 0.55]],
            "artifacts": [_artifact("model.safetensors", b"example router", "application/x-safetensors")]}


def write_examples() -> None:
    key = Ed25519PrivateKey.generate()  # throwaway: examples show the format, they are not trusted by anyone
    did = did_from_key(key)
    expert = manifest_bytes(sign_manifest(validate(_expert(did)), key))
    router = manifest_bytes(sign_manifest(validate(_router(did, cid_of_bytes(expert))), key))
    catalog = {"schema": "hddm.catalog/1", "name": "main", "version": 1, "created": CREATED, "publisher": did,
               "entries": [{"cid": cid_of_bytes(expert), "name": "cifar-fm-c0", "kind": "expert"},
                           {"cid": cid_of_bytes(router), "name": "cifar-router", "kind": "router"}],
               "revoked_manifests": [], "revoked_keys": []}
    lock = {"schema": "hddm.lock/1", "name": "cifar-ensemble", "created": CREATED,
            "members": [{"role": "expert", "manifest_cid": cid_of_bytes(expert), "name": "cifar-fm-c0",
                         "publisher": did, "artifacts": [{k: v for k, v in a.items() if k != "media_type"}
                                                         for a in _expert(did)["artifacts"]]}],
            "router": {"kind": "cid", "params": {"top_k": 1}, "manifest_cid": cid_of_bytes(router)}}
    docs = {"expert.json": expert, "router.json": router,
            "catalog.json": manifest_bytes(sign_manifest(validate(catalog), key)),
            "lock.json": manifest_bytes(validate(lock))}
    for name, data in docs.items():
        atomic_write(ROOT / "examples" / name, json.dumps(json.loads(data), indent=2).encode() + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", action="store_true", help="also regenerate the signed example manifests")
    args = parser.parse_args()
    for name, schema in json_schemas().items():
        atomic_write(ROOT / name, render(schema).encode())
        print(f"wrote manifests/{name}")
    if args.examples:
        write_examples()
        print("wrote manifests/examples/*.json")


if __name__ == "__main__":
    main()
