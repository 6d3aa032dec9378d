"""hddm assemble as a library call: sources, compatibility, routers, the lock file."""

from __future__ import annotations

import json
import shutil

import pytest

from hddm_p2p.errors import CompatibilityError, ManifestError, SpecError, TrustError
from hddm_p2p.p2p.manifests import EnsembleLock, validate
from hddm_p2p.p2p.signing import parse_json
from hddm_p2p.pipeline.assemble import AssembleConfig, assemble
from tests.pipeline.conftest import train_tiny


def _assemble(tmp_path, **kw):
    kw.setdefault("out", tmp_path / "e.lock.json")
    return assemble(AssembleConfig(progress=False, **kw))


def test_threshold_lock_pins_everything(world, home, tmp_path):
    res = _assemble(tmp_path, experts=tuple(world.cids), router="threshold:0.4", name="t")
    lock = validate(parse_json(res.path.read_bytes()), EnsembleLock)
    assert [m.manifest_cid for m in lock.members] == world.cids
    for m, d in zip(lock.members, world.dirs):
        weights = next(a for a in m.artifacts if a.name == "model.safetensors")
        import hashlib
        assert weights.sha256 == hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest()
        assert m.publisher == world.did
    # FM expert (index 1) high, the two converted ε experts low: read from the manifests
    assert lock.router.kind == "threshold" and lock.router.params == {"tau": 0.4, "low": [0, 2], "high": [1]}


def test_uniform_and_catalog(world, home, tmp_path):
    from hddm_p2p.p2p.catalog import publish_catalog
    from hddm_p2p.p2p.store import LocalStore

    cat = publish_catalog(LocalStore(), "pipeline-test", add=world.cids[:2], key_name="tester")
    res = _assemble(tmp_path, catalog=cat.ipns, router="uniform")
    assert sorted(m.manifest_cid for m in res.lock.members) == sorted(world.cids[:2])  # catalog order
    assert res.lock.router.kind == "uniform"


def test_threshold_needs_both_kinds(world, home, tmp_path):
    with pytest.raises(CompatibilityError, match="flow-matching .* and one converted"):
        _assemble(tmp_path, experts=(world.cids[0], world.cids[2]), router="threshold:0.5")


def test_incompatible_expert_named_with_field(world, home, tmp_path):
    from hddm_p2p.p2p.publish import publish_dir
    from hddm_p2p.p2p.store import LocalStore

    d = train_tiny(world.digits, tmp_path / "t-class", "fm", "flow-linear", None, None, steps=1, condition="class")
    cid = publish_dir(d, LocalStore(), key_name="tester", progress=False).cid
    with pytest.raises(CompatibilityError) as e:
        _assemble(tmp_path, experts=(world.cids[0], cid), router="uniform")
    msg = str(e.value)
    assert "'t-class" in msg and "conditioning.kind is 'class', expected 'none'" in msg
    assert not (tmp_path / "e.lock.json").exists()


def test_untrusted_publisher_refused(world, home, tmp_path):
    from hddm_p2p.p2p.keys import KeyStore
    from hddm_p2p.p2p.publish import publish_dir
    from hddm_p2p.p2p.store import LocalStore

    KeyStore().generate("stranger")
    cid = publish_dir(world.dirs[1], LocalStore(), key_name="stranger", progress=False).cid
    with pytest.raises(TrustError, match="not in your trust store"):
        _assemble(tmp_path, experts=(world.cids[0], cid))
    res = _assemble(tmp_path, experts=(world.cids[0], cid), allow_untrusted=True)
    assert res.lock.members[1].manifest_cid == cid


def test_dir_of_expert_dirs_and_of_signed_bundles(world, home, tmp_path):
    from hddm_p2p.p2p.cache import Cache
    from hddm_p2p.p2p.fetch import fetch_manifest
    from hddm_p2p.p2p.store import LocalStore

    from hddm_p2p.p2p.keys import KeyStore

    KeyStore().generate("dir-owner")  # not the world's key: republishing would make its v1 CIDs downgrades
    experts = tmp_path / "mine"
    for d in world.dirs[:2]:
        shutil.copytree(d, experts / d.name, ignore=shutil.ignore_patterns("checkpoints"))
    res = _assemble(tmp_path, directory=experts, router="threshold:0.5", key="dir-owner")
    assert len(res.published) == 2 and res.lock.router.params["high"] == [1]
    # a signed bundle: manifest.json + its artifacts, as someone would hand them over
    m, paths = fetch_manifest(LocalStore(), world.cids[2], cache=Cache(), progress=False)
    bundle = tmp_path / "bundles" / "b0"
    bundle.mkdir(parents=True)
    for name, p in paths.items():
        shutil.copy(p, bundle / name)
    res = _assemble(tmp_path, directory=tmp_path / "bundles", out=tmp_path / "b.lock.json")
    assert [x.manifest_cid for x in res.lock.members] == [world.cids[2]] and not res.published
    (bundle / "model.safetensors").write_bytes(b"\0" + (bundle / "model.safetensors").read_bytes()[1:])
    with pytest.raises(Exception, match="does not match its manifest"):
        _assemble(tmp_path, directory=tmp_path / "bundles", out=tmp_path / "c.lock.json")


def test_published_router_must_match(world, home, tmp_path):
    from hddm_p2p.p2p.publish import publish_dir
    from hddm_p2p.p2p.store import LocalStore
    from hddm_p2p.train.router import RouterTrainConfig, train_router_for_experts
    from hddm_p2p.p2p.fetch import fetch_manifest

    descs = [fetch_manifest(LocalStore(), c, progress=False)[0].to_doc() for c in world.cids]
    # trained with the columns in reverse order: the lock keeps member order, generate re-indexes
    train_router_for_experts(descs[::-1], world.cids[::-1], str(world.digits), tmp_path / "r",
                             RouterTrainConfig(steps=2, batch_size=16, max_eval=16))
    rcid = publish_dir(tmp_path / "r", LocalStore(), key_name="tester", progress=False).cid
    res = _assemble(tmp_path, experts=tuple(world.cids), router=rcid)
    assert res.lock.router.kind == "cid" and res.lock.router.manifest_cid == rcid
    with pytest.raises(CompatibilityError, match="router does not match the ensemble"):
        _assemble(tmp_path, experts=tuple(world.cids[:2]), router=rcid)
    with pytest.raises(ManifestError, match="not a router"):
        _assemble(tmp_path, experts=tuple(world.cids[:2]), router=world.cids[2])


@pytest.mark.parametrize("kw, match", [
    ({}, "exactly one of --experts"),
    ({"experts": ("x",), "catalog": "y"}, "got --experts, --catalog"),
    ({"experts": ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",), "router": "train"}, "needs --data"),
    ({"experts": ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",), "router": "threshold:2"}, r"\[0, 1\]"),
    ({"experts": ("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",), "router": "bogus"}, "not one of"),
])
def test_bad_flags_fail_before_work(tmp_path, home, kw, match):
    with pytest.raises(SpecError, match=match):
        _assemble(tmp_path, **kw)
    assert not (tmp_path / "e.lock.json").exists()


def test_duplicate_expert_refused(world, home, tmp_path):
    with pytest.raises(Exception, match="listed twice"):
        _assemble(tmp_path, experts=(world.cids[0], world.cids[0]))
    assert json.loads  # lock never written
    assert not (tmp_path / "e.lock.json").exists()
