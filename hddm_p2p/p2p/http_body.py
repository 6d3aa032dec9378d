"""Reading a large HTTP/1.1 response body in big blocks, fast enough not to slow a local Kubo down.

Kubo's RPC API streams ``cat`` with ``Transfer-Encoding: chunked`` in 4 KiB chunks (262,144 per GiB).
``http.client`` decodes them with several Python calls and a small ``recv`` each (~60 MB/s on a loaded
core); ``body_blocks`` reads up to 1 MiB per ``recv`` into one buffer and copies the payloads of a run of
identically framed chunks into blocks of ``block`` bytes with one numpy call (general chunks: one
``bytearray.find`` and one copy each). Holding the GIL as little as possible matters as much as the CPU
saved: the hashing and writing threads each need it back after every call into hashlib or ``write``.

Kubo reports an error that happens after the status line (e.g. a block that fails to load) in the
``X-Stream-Error`` trailer; it is raised as ``BodyError`` rather than passing as a short body.
"""

from __future__ import annotations

import http.client
from typing import BinaryIO, Iterator

import numpy as np

_RECV = 1 << 20  # bytes asked of the socket per read
_MAX_LINE = 4096  # a chunk-size or trailer line longer than this is not HTTP
_CRLF = np.frombuffer(b"\r\n", np.uint8)


class BodyError(Exception):
    """The body broke off, was not valid chunked encoding, or the server reported an error in a trailer."""


def body_blocks(response: http.client.HTTPResponse, block: int = 4 << 20) -> Iterator[memoryview | bytearray]:
    """The body of ``response`` (status and headers already read) as blocks of ``block`` bytes, the last shorter.

    Each block is a new buffer that nothing else writes to, so it may be kept (e.g. by a hashing thread)."""
    if not response.chunked:  # Content-Length or read-until-close: http.client already reads it in bulk
        while True:
            out = bytearray(block)
            n = response.readinto(out)
            if not n:
                return
            yield out if n == block else memoryview(out)[:n]
    else:
        response.chunked = False  # the rest of the stream is ours; http.client must not parse it again
        yield from _Dechunker(response.fp).blocks(block)


class _Dechunker:
    """``size-hex[;ext] CRLF payload CRLF`` … ``0 CRLF`` trailers ``CRLF`` from a buffered reader."""

    def __init__(self, fp: BinaryIO):
        self._fp, self._buffered = fp, True  # fp may still hold body bytes read along with the headers
        # after those, read the socket directly: BufferedReader.readinto1 with a buffer larger than its own
        # copies what it holds and then blocks in one more recv, even when that completes the body
        self._recv_into = getattr(fp, "raw", fp).readinto
        self._raw = bytearray(_RECV)
        self._view = memoryview(self._raw)
        self._start = self._end = 0  # unread bytes are _raw[_start:_end]

    def blocks(self, block: int) -> Iterator[memoryview | bytearray]:
        out, o = bytearray(block), 0
        while True:
            o += self._uniform_run(out, o)
            if o == block:
                yield out
                out, o = bytearray(block), 0
                continue
            size = self._chunk_size()
            if not size:
                break
            while size:  # copy this chunk's payload into ``out``, reading more as needed
                if self._start == self._end:
                    self._refill()
                k = min(size, self._end - self._start, block - o)
                out[o:o + k] = self._view[self._start:self._start + k]
                o, self._start, size = o + k, self._start + k, size - k
                if o == block:
                    yield out
                    out, o = bytearray(block), 0
            if self._line():
                raise BodyError("malformed chunked encoding: no CRLF after a chunk")
        self._trailers()
        if o:
            yield memoryview(out)[:o]

    def _uniform_run(self, out: bytearray, o: int) -> int:
        """Copy a run of whole, identically framed chunks from the buffer into ``out[o:]`` with numpy; bytes copied.

        Kubo frames every chunk as ``1000 CRLF`` + 4096 bytes + ``CRLF``: viewed as a (chunks × 4104) array, the
        frames are checked (same header, CRLF after each payload) and the payload columns copied in one call,
        instead of ~8 Python steps per chunk. Anything else (a first chunk of another size, the end) is left
        to the general path."""
        raw, start, end = self._raw, self._start, self._end
        j = raw.find(b"\r\n", start, min(end, start + 18))
        if j < 0:
            return 0
        size = _hex(raw[start:j])  # no extensions on the fast path
        if size is None:
            return 0
        head = j + 2 - start
        frame = head + size + 2
        n = min((end - start) // frame, (len(out) - o) // size if size else 0)
        if n < 2:
            return 0
        frames = np.frombuffer(raw, np.uint8, n * frame, start).reshape(n, frame)
        good = (frames[:, :head] == frames[0, :head]).all(1) & (frames[:, head + size:] == _CRLF).all(1)
        n = n if good.all() else int(good.argmin())  # stop before the first frame that differs
        np.copyto(np.frombuffer(out, np.uint8, n * size, o).reshape(n, size), frames[:n, head:head + size])
        self._start = start + n * frame
        return n * size

    def _chunk_size(self) -> int:
        line = self._line()
        size = _hex(line.split(b";", 1)[0].rstrip(b" \t"))
        if size is None:
            raise BodyError(f"malformed chunked encoding: chunk size {bytes(line[:40])!r}")
        return size

    def _trailers(self) -> None:
        while line := self._line():
            name, _, value = bytes(line).partition(b":")
            if name.strip().lower() == b"x-stream-error" and value.strip():
                raise BodyError(value.strip().decode(errors="replace"))

    def _line(self) -> bytearray:
        """The next CRLF-terminated line, without its CRLF."""
        while (j := self._raw.find(b"\r\n", self._start, self._end)) < 0:
            if self._end - self._start > _MAX_LINE:
                raise BodyError("malformed chunked encoding: line too long")
            self._refill()
        line, self._start = self._raw[self._start:j], j + 2
        return line

    def _refill(self) -> None:
        """Move the unread tail to the front and read more; ``BodyError`` when the connection ends."""
        rest = self._end - self._start
        if rest and self._start:
            self._raw[:rest] = self._raw[self._start:self._end]
        self._start, self._end = 0, rest
        if self._buffered:
            self._buffered = False
            data = self._fp.read1(len(self._raw) - rest)  # what fp holds, or one recv if it holds nothing
            n = len(data)
            self._raw[rest:rest + n] = data
        else:
            n = self._recv_into(self._view[rest:])
        if not n:
            raise BodyError("the connection closed in the middle of the body")
        self._end += n


def _hex(token: bytes | bytearray) -> int | None:
    """A chunk size: 1–16 hex digits and nothing else (``int(x, 16)`` alone would take ``-5``, `` 1_0``)."""
    if not 0 < len(token) <= 16 or token.strip(b"0123456789abcdefABCDEF"):
        return None
    return int(token, 16)
