"""A thin typed client for Kubo's RPC API (``POST /api/v0/<command>``), over httpx.

py-ipfs-http-client is unmaintained since 2021 and refuses Kubo ≥ 0.8, so this module speaks the
HTTP API directly. Only the commands hddm needs are wrapped; each returns plain Python values.

Addresses are multiaddrs as Kubo prints them (``/ip4/127.0.0.1/tcp/5001``) or ``http://`` URLs.
Only loopback APIs (127.0.0.0/8, ::1, ``localhost``) are accepted: the RPC API has no authentication,
so a remote one is refused unless ``HDDM_ALLOW_REMOTE_API=1`` is set deliberately.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import uuid
from contextlib import contextmanager
from typing import Any, Iterable, Iterator
from urllib.parse import quote, urlencode, urlsplit

import httpx
from multiformats import multibase

from hddm_p2p.errors import StoreError, StoreUnavailable
from hddm_p2p.p2p.http_body import BodyError, body_blocks

DEFAULT_API = "/ip4/127.0.0.1/tcp/5001"
ALLOW_REMOTE_ENV = "HDDM_ALLOW_REMOTE_API"
_HOW_TO_START = "start a node with `ipfs daemon` (or pass --ipfs-api MULTIADDR), or use --store local"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_url(api: str) -> str:
    """``/ip4/127.0.0.1/tcp/5001`` (or ``http://127.0.0.1:5001``) → ``http://127.0.0.1:5001``.

    Raises ``StoreError`` for anything else, and for a non-loopback host unless ``HDDM_ALLOW_REMOTE_API=1``."""
    api = api.strip()
    if api.startswith(("http://", "https://")):
        parts = urlsplit(api)
        scheme, host, port = parts.scheme, parts.hostname or "", parts.port
    else:
        p = api.strip("/").split("/")
        if len(p) not in (4, 5) or p[0] not in ("ip4", "ip6", "dns", "dns4", "dns6") or p[2] != "tcp" \
                or (len(p) == 5 and p[4] not in ("http", "https")):
            raise StoreError(f"cannot parse the Kubo API address {api!r}; expected e.g. {DEFAULT_API}")
        scheme, host, port = (p[4] if len(p) == 5 else "http"), p[1], int(p[3]) if p[3].isdigit() else None
    if not host or port is None:
        raise StoreError(f"cannot parse the Kubo API address {api!r}; expected e.g. {DEFAULT_API}")
    if not _is_loopback(host) and os.environ.get(ALLOW_REMOTE_ENV) != "1":
        raise StoreError(f"refusing the Kubo API at {api}: not a loopback address (its RPC API is unauthenticated); "
                         f"set {ALLOW_REMOTE_ENV}=1 to allow it")
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def encode_topic(topic: str) -> str:
    """Kubo ≥ 0.11 takes pubsub topics multibase-encoded (base64url, ``u`` prefix)."""
    return multibase.encode(topic.encode(), "base64url")


def _multipart_ends(filename: str, boundary: str) -> tuple[bytes, bytes]:
    """The bytes before and after the file's content in a multipart/form-data body with one file part."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{quote(filename)}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head, f"\r\n--{boundary}--\r\n".encode()


def _multipart(chunks: Iterable[bytes], filename: str, boundary: str) -> Iterator[bytes]:
    """A multipart/form-data body with one file part, streamed chunk by chunk (never held in memory)."""
    head, tail = _multipart_ends(filename, boundary)
    yield head
    yield from chunks
    yield tail


class KuboClient:
    """Calls to one Kubo daemon. Errors: ``StoreUnavailable`` when it cannot be reached, else ``StoreError``."""

    def __init__(self, api: str = DEFAULT_API, *, timeout: float = 60.0):
        self.api, self.timeout = api, timeout
        self.base_url = api_url(api)
        self._http = httpx.Client(base_url=f"{self.base_url}/api/v0/",
                                  timeout=httpx.Timeout(timeout, connect=5.0), trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> KuboClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transport ---------------------------------------------------------------------------

    @contextmanager
    def _stream(self, command: str, params: dict[str, Any] | None = None, *, http: httpx.Client | None = None,
                **kw) -> Iterator[httpx.Response]:
        try:
            with (http or self._http).stream("POST", command, params=params, **kw) as response:
                if response.status_code != 200:
                    response.read()
                    raise StoreError(f"kubo {command}: {self._message(response)}")
                yield response
        except httpx.TransportError as e:
            if isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout)):
                raise self._transport_error(command, ConnectionRefusedError(str(e))) from None
            raise self._transport_error(command, TimeoutError() if isinstance(e, httpx.ReadTimeout) else e) from None

    def _call(self, command: str, params: dict[str, Any] | None = None, **kw) -> Any:
        """One request; the JSON body (the last object of a JSON-lines answer), or None when empty."""
        with self._stream(command, params, **kw) as response:
            body = response.read()
        lines = [line for line in body.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None

    @staticmethod
    def _message(response: httpx.Response) -> str:
        return KuboClient._message_text(response.status_code, response.content)

    @staticmethod
    def _message_text(status: int, body: bytes) -> str:
        try:
            return json.loads(body)["Message"]
        except (ValueError, KeyError, TypeError):
            return f"HTTP {status}: {body.decode(errors='replace').strip()[:200]}"

    # --- node ----------------------------------------------------------------------------------

    def version(self) -> str:
        return self._call("version")["Version"]

    def id(self) -> dict[str, Any]:
        """``{"ID": peer id, "PublicKey", "Addresses": [multiaddr...], "AgentVersion", ...}``."""
        return self._call("id")

    def swarm_connect(self, multiaddr: str) -> None:
        self._call("swarm/connect", {"arg": multiaddr})

    def swarm_peers(self) -> list[dict[str, Any]]:
        return self._call("swarm/peers")["Peers"] or []

    def swarm_addrs_listen(self) -> list[str]:
        return self._call("swarm/addrs/listen")["Strings"] or []

    # --- content ---------------------------------------------------------------------------------

    def add(self, chunks: Iterable[bytes], *, filename: str = "file", params: dict[str, str],
            size: int | None = None) -> str:
        """Upload a file streamed from ``chunks`` with explicit import ``params``; returns Kubo's CID.

        With the file's ``size`` known, the body goes out with a Content-Length through ``http.client``, each
        chunk (any bytes-like, e.g. a ``memoryview`` of a read buffer) passed to ``sendall`` without a copy."""
        boundary = uuid.uuid4().hex
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        query = {"progress": "false", "quieter": "true", **params}
        if size is None:
            result = self._call("add", query, content=_multipart(chunks, filename, boundary), headers=headers)
        else:
            head, tail = _multipart_ends(filename, boundary)
            headers["Content-Length"] = str(len(head) + size + len(tail))
            result = self._post_stream("add", query, _multipart(chunks, filename, boundary), headers)
        if not result or "Hash" not in result:
            raise StoreError(f"kubo add: unexpected answer {result!r}")
        return result["Hash"]

    def _post_stream(self, command: str, params: dict[str, Any], body: Iterable[bytes],
                     headers: dict[str, str]) -> Any:
        """POST a body of known length through ``http.client``; the last JSON line of the answer."""
        url = urlsplit(self.base_url)
        connection = (http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection)(
            url.hostname, url.port, timeout=self.timeout)
        try:
            connection.request("POST", f"/api/v0/{command}?{urlencode(params)}", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._transport_error(command, e) from None
        finally:
            connection.close()
        if response.status != 200:
            raise StoreError(f"kubo {command}: {self._message_text(response.status, answer)}")
        lines = [line for line in answer.splitlines() if line.strip()]
        return json.loads(lines[-1]) if lines else None

    @contextmanager
    def cat(self, cid: str, *, offset: int = 0, length: int | None = None,
            chunk_size: int = 4 << 20) -> Iterator[Iterator[bytes]]:
        """``with client.cat(cid, offset=n) as blocks:`` streams the file's bytes from ``offset``.

        Blocks are bytes-like (``bytearray``/``memoryview``) of ``chunk_size`` bytes, the last shorter, each a new
        buffer. The request goes through the standard library's ``http.client``; the body is decoded by
        ``http_body.body_blocks`` (Kubo sends 4 KiB HTTP chunks, which per-chunk Python parsing cannot keep up with)."""
        params: dict[str, Any] = {"arg": cid, "offset": offset}
        if length is not None:
            params["length"] = length
        url = urlsplit(self.base_url)
        connection = (http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection)(
            url.hostname, url.port, timeout=self.timeout)
        try:
            try:
                connection.request("POST", f"/api/v0/cat?{urlencode(params)}")
                response = connection.getresponse()
            except (OSError, http.client.HTTPException) as e:
                raise self._transport_error("cat", e) from None
            if response.status != 200:
                raise StoreError(f"kubo cat: {self._message_text(response.status, response.read())}")
            yield self._read_blocks(response, chunk_size)
        finally:
            connection.close()

    def _read_blocks(self, response: http.client.HTTPResponse, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from body_blocks(response, chunk_size)
        except BodyError as e:
            if "connection closed" in str(e):
                raise self._transport_error("cat", ConnectionResetError(str(e))) from None
            raise StoreError(f"kubo cat: {e}") from None
        except (OSError, http.client.HTTPException) as e:
            raise self._transport_error("cat", e) from None

    def _transport_error(self, command: str, e: Exception) -> StoreError:
        if isinstance(e, ConnectionRefusedError):
            return StoreUnavailable(f"cannot reach the Kubo RPC API at {self.api}; {_HOW_TO_START}")
        if isinstance(e, TimeoutError):
            return StoreError(f"kubo {command}: no answer from {self.api} within {self.timeout:g} s; is the content "
                              "held by this node or a connected peer?")
        return StoreError(f"kubo {command}: the connection to {self.api} broke ({e}); run the command again "
                          "(downloads resume)")

    def file_size(self, cid: str) -> int:
        """Bytes of file content under ``cid`` (``files stat``)."""
        return int(self._call("files/stat", {"arg": f"/ipfs/{cid}"})["Size"])

    def block_stat(self, cid: str, *, offline: bool = False) -> dict[str, Any]:
        """``{"Key": cid, "Size": bytes}``; with ``offline`` only the local blockstore is asked."""
        return self._call("block/stat", {"arg": cid, "offline": str(offline).lower()})

    def pin_add(self, cid: str) -> None:
        self._call("pin/add", {"arg": cid})

    def pin_ls(self, cid: str | None = None) -> dict[str, str]:
        """``{cid: pin type}`` of every pin, or only of ``cid`` (a ``StoreError`` if it is not pinned)."""
        params = {"arg": cid} if cid else {}
        return {k: v["Type"] for k, v in (self._call("pin/ls", params)["Keys"] or {}).items()}

    def pin_remote_services(self) -> list[str]:
        """Names of the remote pinning services this node knows (``ipfs pin remote service ls``)."""
        return [s["Service"] for s in (self._call("pin/remote/service/ls") or {}).get("RemoteServices") or []]

    def pin_remote_add(self, cid: str, *, service: str, name: str = "") -> dict[str, Any]:
        """``ipfs pin remote add --service=NAME`` (IPFS Pinning Service API): returns once the service
        reports the pin ``pinned``, as ``{"Cid", "Name", "Status"}``."""
        return self._call("pin/remote/add", {"arg": cid, "service": service, "name": name, "background": "false"})

    # --- keys and IPNS --------------------------------------------------------------------------

    def key_list(self) -> dict[str, str]:
        """``{key name: IPNS name (peer id)}``."""
        return {k["Name"]: k["Id"] for k in self._call("key/list", {"l": "true"})["Keys"] or []}

    def key_gen(self, name: str, *, key_type: str = "ed25519") -> str:
        return self._call("key/gen", {"arg": name, "type": key_type})["Id"]

    def key_import(self, name: str, key: bytes, *, key_format: str = "pem-pkcs8-cleartext") -> str:
        """Import a private key (PKCS#8 PEM by default, e.g. an Ed25519 signing key); returns its IPNS name."""
        boundary = uuid.uuid4().hex
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        result = self._call("key/import", {"arg": name, "format": key_format},
                            content=_multipart([key], "key", boundary), headers=headers)
        return result["Id"]

    def name_publish(self, path: str, *, key: str = "self", lifetime: str = "24h", ttl: str | None = None,
                     allow_offline: bool = True) -> dict[str, str]:
        """Point the IPNS name of ``key`` at ``path`` (``/ipfs/<cid>``); returns ``{"Name", "Value"}``."""
        params = {"arg": path, "key": key, "lifetime": lifetime, "allow-offline": str(allow_offline).lower(),
                  "resolve": "false"}
        if ttl:
            params["ttl"] = ttl
        return self._call("name/publish", params)

    def name_resolve(self, name: str, *, nocache: bool = True, timeout: str | None = None) -> str:
        """The path (``/ipfs/<cid>``) an IPNS name points at."""
        params = {"arg": name, "nocache": str(nocache).lower(), "recursive": "true"}
        if timeout:
            params["dht-timeout"] = timeout
        return self._call("name/resolve", params)["Path"]

    # --- pubsub --------------------------------------------------------------------------------

    def pubsub_pub(self, topic: str, data: bytes) -> None:
        boundary = uuid.uuid4().hex
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        self._call("pubsub/pub", {"arg": encode_topic(topic)}, content=_multipart([data], "data", boundary),
                   headers=headers)

    def pubsub_peers(self, topic: str) -> list[str]:
        return self._call("pubsub/peers", {"arg": encode_topic(topic)})["Strings"] or []

    @contextmanager
    def pubsub_sub(self, topic: str) -> Iterator[Iterator[dict[str, Any]]]:
        """``with client.pubsub_sub(t) as messages:`` yields ``{"from": peer id, "data": bytes, "seqno": hex}``
        until the context exits. The subscription is live once the context is entered."""
        sub = httpx.Client(base_url=self._http.base_url, timeout=httpx.Timeout(None, connect=5.0), trust_env=False)
        try:
            with self._stream("pubsub/sub", {"arg": encode_topic(topic)}, http=sub) as response:
                yield (self._message_of(json.loads(line)) for line in response.iter_lines() if line.strip())
        finally:
            sub.close()

    @staticmethod
    def _message_of(raw: dict[str, Any]) -> dict[str, Any]:
        return {"from": raw.get("from", ""), "data": multibase.decode(raw["data"]) if raw.get("data") else b"",
                "seqno": multibase.decode(raw["seqno"]).hex() if raw.get("seqno") else ""}
