"""The chunked-body decoder behind ``KuboClient.cat``: exact bytes for any framing and any read sizes, errors for bad input.

Real HTTP: a ``http.server`` on loopback answers with chunked bodies framed as the test says (Kubo's 4 KiB
chunks, odd sizes, trailers), read through ``http.client`` exactly as ``KuboClient.cat`` reads it."""

from __future__ import annotations

import http.client
import io
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hddm_p2p.p2p.http_body import BodyError, _Dechunker, body_blocks


class ShortReads(io.RawIOBase):
    """A raw stream returning at most a random few bytes per read, like a socket under load."""

    def __init__(self, data: bytes, seed: int, most: int):
        self._data, self._pos, self._rng, self._most = data, 0, random.Random(seed), most

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._rng.randint(1, self._most), len(self._data) - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def frame(chunks: list[bytes], trailer: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n" % len(c) + c + b"\r\n" for c in chunks) + b"0\r\n" + trailer + b"\r\n"


def decode(body: bytes, block: int, seed: int = 0, most: int = 1 << 20) -> bytes:
    fp = io.BufferedReader(ShortReads(body, seed, most))
    return b"".join(bytes(b) for b in _Dechunker(fp).blocks(block))


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.sampled_from([0, 1, 7, 4096, 4096, 4096, 5000]), max_size=60),
       block=st.sampled_from([1, 4095, 4096, 10000, 1 << 20]), most=st.sampled_from([1, 9, 4104, 70000, 1 << 20]),
       seed=st.integers(0, 1000))
def test_any_framing_and_read_sizes_give_the_payload(sizes, block, most, seed):
    rng = random.Random(seed)
    chunks = [rng.randbytes(n) for n in sizes if n]  # a zero-size chunk would end the body
    assert decode(frame(chunks), block, seed, most) == b"".join(chunks)


def test_blocks_are_full_except_the_last():
    chunks = [bytes([i]) * 4096 for i in range(40)]  # a uniform run, as Kubo sends
    fp = io.BufferedReader(ShortReads(frame(chunks), 1, 1 << 20))
    sizes = [len(b) for b in _Dechunker(fp).blocks(10000)]
    assert sizes[:-1] == [10000] * (len(sizes) - 1) and sum(sizes) == 40 * 4096


def test_a_corrupt_frame_inside_a_uniform_run_is_refused():
    body = bytearray(frame([bytes([i]) * 4096 for i in range(10)]))
    body[5 * 4104 + 4102] = ord("x")  # the CRLF after chunk 5
    with pytest.raises(BodyError, match="no CRLF"):
        decode(bytes(body), 1 << 20)


@pytest.mark.parametrize("size_line", [b"-5", b"zz", b"1_0", b" ", b"1" * 17])
def test_bad_chunk_sizes_are_refused(size_line):
    with pytest.raises(BodyError, match="chunk size"):
        decode(size_line + b"\r\nhello\r\n0\r\n\r\n", 1 << 20)


def test_extensions_and_plain_trailers_are_accepted():
    assert decode(b"5;name=v\r\nhello\r\n0\r\nX-Other: 1\r\n\r\n", 64) == b"hello"


def test_kubo_stream_error_trailer_is_raised():
    with pytest.raises(BodyError, match="block was not found"):
        decode(frame([b"a" * 4096] * 3, b"X-Stream-Error: block was not found\r\n"), 1 << 20)


def test_truncated_body_is_an_error():
    with pytest.raises(BodyError, match="closed in the middle"):
        decode(frame([b"a" * 4096] * 3)[:-20], 1 << 20)


# --- through a real HTTP server and http.client ------------------------------------------------

@pytest.fixture
def server():
    bodies: dict[str, tuple[bytes, bool]] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_POST(self):
            body, chunked = bodies[self.path]
            self.send_response(200)
            self.send_header("Transfer-Encoding" if chunked else "Content-Length", "chunked" if chunked else str(len(body)))
            self.end_headers()
            self.wfile.write(body)  # keep-alive: the client must stop at the end of the body, not wait for close

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1], bodies
    srv.shutdown()
    srv.server_close()


def _fetch(port: int, path: str, block: int) -> list[bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path)
        return [bytes(b) for b in body_blocks(conn.getresponse(), block)]
    finally:
        conn.close()


def test_over_http_chunked_and_content_length(server):
    port, bodies = server
    payload = random.Random(3).randbytes(3 * 4096 * 50 + 17)
    chunks = [payload[i:i + 4096] for i in range(0, len(payload), 4096)]
    bodies["/chunked"], bodies["/small"] = (frame(chunks), True), (frame([b"hi"]), True)
    bodies["/plain"] = (payload, False)
    assert b"".join(_fetch(port, "/chunked", 100_000)) == payload
    assert _fetch(port, "/small", 1 << 20) == [b"hi"]  # body bytes arrived with the headers: no extra recv
    blocks = _fetch(port, "/plain", 100_000)
    assert b"".join(blocks) == payload and {len(b) for b in blocks[:-1]} == {100_000}
