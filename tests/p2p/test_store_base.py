"""Pipeline: work runs in order on one thread; its first error reaches the caller."""

from __future__ import annotations

import threading

import pytest

from hddm_p2p.p2p.store.base import Pipeline


def test_pipeline_keeps_order_and_runs_off_thread():
    seen, threads = [], set()

    def work(chunk: bytes) -> None:
        seen.append(chunk)
        threads.add(threading.get_ident())

    with Pipeline(work, depth=2) as pipe:
        for i in range(50):
            pipe.submit(bytes([i]))
    assert seen == [bytes([i]) for i in range(50)]
    assert threads and threading.get_ident() not in threads


def test_pipeline_raises_the_first_error():
    def work(chunk: bytes) -> None:
        if chunk == b"\x03":
            raise ValueError("chunk 3 is bad")

    with pytest.raises(ValueError, match="chunk 3"):
        with Pipeline(work, depth=2) as pipe:
            for i in range(20):
                pipe.submit(bytes([i]))
