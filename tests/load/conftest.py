"""Load-test helpers: a counting reverse proxy in front of a real Kubo RPC API, and a counting store wrapper."""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class CountingProxy:
    """Forwards every RPC call to the Kubo API at ``target`` (``http://127.0.0.1:N``) and counts
    ``(command, arg)`` pairs, so a test can tell how often the daemon was asked for a CID."""

    def __init__(self, target: str):
        self.target = urlsplit(target)
        self.calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        ThreadingHTTPServer.request_queue_size = 256  # 100 clients connect at once
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def api(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self._server.server_address[1]}"

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                url = urlsplit(self.path)
                arg = parse_qs(url.query).get("arg", [""])[0]
                with proxy._lock:
                    proxy.calls[(url.path.removeprefix("/api/v0/"), arg)] += 1
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                upstream = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
                try:
                    upstream.request("POST", self.path, body=body,
                                     headers={k: v for k, v in self.headers.items() if k.lower() != "host"})
                    resp = upstream.getresponse()
                    data = resp.read()
                finally:
                    upstream.close()
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.getheader("Content-Type", "application/octet-stream"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


class CountingStore:
    """Delegates to a real store and counts ``download`` calls per CID (a cache write each)."""

    def __init__(self, store):
        self._store = store
        self.downloads: Counter[str] = Counter()
        self._lock = threading.Lock()

    def download(self, cid, dest, **kw):
        with self._lock:
            self.downloads[cid] += 1
        return self._store.download(cid, dest, **kw)

    def __getattr__(self, name):
        return getattr(self._store, name)
