"""The key store: Ed25519 signing keys under ``$HDDM_HOME/keys``.

Each key NAME is two files: ``NAME.pem`` (PKCS8 PEM, mode 0600, optionally encrypted with a passphrase via
``cryptography``'s BestAvailableEncryption) and ``NAME.json`` (public metadata: did, created, encrypted), so
listing keys never needs a passphrase. ``export_private`` writes cleartext PKCS8 PEM, which
``ipfs key import --format=pem-pkcs8-cleartext`` reads: the IPNS name and the manifest signatures are one key.

    ks = KeyStore()
    info = ks.generate("alice")           # info.did == "did:key:z6Mk...", info.ipns == "k51..."
    key = ks.load("alice")                # Ed25519PrivateKey
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hddm_p2p.errors import KeyStoreError
from hddm_p2p.p2p._files import atomic_write, read_json, write_json
from hddm_p2p.p2p.signing import did_from_key, ipns_name
from hddm_p2p.paths import hddm_home

PASSPHRASE_ENV = "HDDM_KEY_PASSPHRASE"
DEFAULT_KEY = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# libp2p PrivateKey protobuf (Kubo's `ipfs key export` default): 08 01 (Ed25519) 12 40 (64 bytes: seed ‖ pub).
_LIBP2P_ED25519_PRIV = b"\x08\x01\x12\x40"


@dataclass(frozen=True)
class KeyInfo:
    """Public facts about a stored key. ``did`` and ``ipns`` name the same public key."""

    name: str
    did: str
    created: str
    encrypted: bool

    @property
    def ipns(self) -> str:
        return ipns_name(self.did)


def _check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise KeyStoreError(f"invalid key name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


def _passphrase(explicit: str | None) -> bytes | None:
    value = explicit if explicit is not None else os.environ.get(PASSPHRASE_ENV)
    return value.encode() if value else None


def _decode_private(data: bytes, passphrase: bytes | None, what: str) -> Ed25519PrivateKey:
    """A PEM/DER PKCS8 or libp2p-protobuf Ed25519 private key; KeyStoreError with the reason otherwise."""
    if data.startswith(_LIBP2P_ED25519_PRIV) and len(data) == 4 + 64:
        return Ed25519PrivateKey.from_private_bytes(data[4:36])
    pem = data.lstrip().startswith(b"-----")
    loader = serialization.load_pem_private_key if pem else serialization.load_der_private_key
    if pem and b"ENCRYPTED" not in data:
        passphrase = None  # a cleartext PEM: a passphrase given for the stored copy does not apply
    try:
        key = loader(data, password=passphrase)
    except TypeError as e:  # encrypted without passphrase, or passphrase for a cleartext key
        if passphrase is None:
            raise KeyStoreError(f"{what} is passphrase-protected; pass --passphrase or set {PASSPHRASE_ENV}") from None
        raise KeyStoreError(f"{what}: {e}") from None
    except ValueError:
        hint = "wrong passphrase, or " if passphrase else ""
        raise KeyStoreError(f"cannot read {what}: {hint}not a PKCS8 PEM/DER or libp2p-protobuf key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyStoreError(f"{what} is a {type(key).__name__}, but hddm signs with Ed25519 keys only")
    return key


class KeyStore:
    """Named Ed25519 keys in one directory (mode 0700; private files 0600)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root is not None else hddm_home() / "keys"

    def _pem(self, name: str) -> Path:
        return self.root / f"{_check_name(name)}.pem"

    def _meta(self, name: str) -> Path:
        return self.root / f"{_check_name(name)}.json"

    def _save(self, name: str, key: Ed25519PrivateKey, passphrase: bytes | None) -> KeyInfo:
        if self._pem(name).exists():
            raise KeyStoreError(f"a key named {name!r} already exists; choose another --name or remove "
                                f"{self._pem(name)} first")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        enc = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
        info = KeyInfo(name, did_from_key(key), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       passphrase is not None)
        atomic_write(self._pem(name), pem, mode=0o600)
        write_json(self._meta(name), {"name": name, "did": info.did, "created": info.created,
                                      "encrypted": info.encrypted})
        return info

    def generate(self, name: str = DEFAULT_KEY, passphrase: str | None = None) -> KeyInfo:
        """Create a new key; ``passphrase`` (or ``$HDDM_KEY_PASSPHRASE``) encrypts it on disk."""
        return self._save(_check_name(name), Ed25519PrivateKey.generate(), _passphrase(passphrase))

    def import_key(self, data: bytes, name: str, passphrase: str | None = None,
                   new_passphrase: str | None = None) -> KeyInfo:
        """Store a key read from PEM/DER PKCS8 or Kubo's libp2p-protobuf export under ``name``."""
        key = _decode_private(data, _passphrase(passphrase), "imported key")
        return self._save(_check_name(name), key, new_passphrase.encode() if new_passphrase else None)

    def info(self, name: str) -> KeyInfo:
        meta = read_json(self._meta(name), None, KeyStoreError)
        if meta is None or not self._pem(name).exists():
            have = ", ".join(k.name for k in self.list()) or "none"
            raise KeyStoreError(f"no key named {name!r} (have: {have}); create one with `hddm keys generate --name {name}`")
        return KeyInfo(meta["name"], meta["did"], meta["created"], bool(meta["encrypted"]))

    def list(self) -> list[KeyInfo]:
        if not self.root.is_dir():
            return []
        return [self.info(p.stem) for p in sorted(self.root.glob("*.pem"))]

    def load(self, name: str = DEFAULT_KEY, passphrase: str | None = None) -> Ed25519PrivateKey:
        """The private key ``name``; KeyStoreError if missing, locked without passphrase, or not matching its did."""
        info = self.info(name)
        key = _decode_private(self._pem(name).read_bytes(), _passphrase(passphrase) if info.encrypted else None,
                              f"key {name!r}")
        if did_from_key(key) != info.did:
            raise KeyStoreError(f"key {name!r} does not match its recorded identity {info.did}; the key store is corrupt")
        return key

    def export_private(self, name: str, passphrase: str | None = None) -> bytes:
        """Cleartext PKCS8 PEM of ``name`` (what ``ipfs key import --format=pem-pkcs8-cleartext`` accepts)."""
        return self.load(name, passphrase).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    def resolve_name(self, name: str | None) -> str:
        """``name`` if given, else the only key, else ``default``; KeyStoreError when that is ambiguous."""
        if name:
            return name
        names = [k.name for k in self.list()]
        if len(names) == 1 or DEFAULT_KEY in names:
            return names[0] if len(names) == 1 else DEFAULT_KEY
        if not names:
            raise KeyStoreError("no signing key yet; create one with `hddm keys generate`")
        raise KeyStoreError(f"several keys ({', '.join(names)}) and none named 'default'; pass --key NAME")
