"""Streaming webdataset shards for data too large to hold in memory (LAION-scale partitions).

Epoch e reads the shards in an order shuffled by Random(seed, e) through a shuffle buffer drawn from the
same generator, so the sample sequence is a pure function of (seed, e). The loader's state is (epoch,
offset = raw samples consumed this epoch); resuming replays epoch e's sequence and skips ``offset``
samples without decoding them (tar reading only). Images are decoded after shuffling; a corrupt one is
skipped with a warning, counted in ``skipped``, and still advances the offset, keeping resume exact.
"""

from __future__ import annotations

import random

import torch

from hddm_p2p.errors import DataError
from hddm_p2p.train.data import Batch, Filter, decode_sample, raw_samples


class ShardStream:
    """Batches streamed from tar shards; same interface as ``MemorySource``."""

    def __init__(self, files: list[str], resolution: int, batch_size: int, seed: int, flt: Filter = Filter(),
                 buffer_size: int = 2000):
        self.files, self.resolution, self.batch_size, self.seed = list(files), resolution, batch_size, seed
        self.flt, self.buffer_size = flt, buffer_size
        self.epoch, self.offset, self.skipped = 0, 0, 0
        self._it = None

    def _sequence(self, epoch: int):
        """Raw samples of one epoch in their shuffled order."""
        rng = random.Random(self.seed * 1_000_003 + epoch)
        files = self.files[:]
        rng.shuffle(files)
        buf: list[dict] = []
        for sample in raw_samples(files):
            buf.append(sample)
            if len(buf) >= self.buffer_size:
                yield buf.pop(rng.randrange(len(buf)))
        while buf:
            yield buf.pop(rng.randrange(len(buf)))

    def _restart(self) -> None:
        self._it = self._sequence(self.epoch)
        for _ in range(self.offset):  # replay to the recorded position without decoding
            next(self._it, None)

    def _next_decoded(self):
        if self._it is None:
            self._restart()
        for _ in range(2):  # at most one epoch boundary per sample
            for raw in self._it:
                self.offset += 1
                item = decode_sample(raw, self.resolution)
                if item is None:
                    self.skipped += 1
                elif self.flt.keep(raw.get("__key__", "?"), item[1]):
                    return item
            if self.offset == 0:
                break
            self.epoch, self.offset = self.epoch + 1, 0
            self._restart()
        raise DataError(f"no usable samples in {len(self.files)} shard(s) after filtering")

    def next(self) -> Batch:
        items = [self._next_decoded() for _ in range(self.batch_size)]
        return Batch(torch.stack([i[0] for i in items]), torch.tensor([i[1] for i in items], dtype=torch.long),
                     [i[2] for i in items], "pixel")

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset, "skipped": self.skipped}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self.skipped, self._it = int(state.get("skipped", 0)), None
