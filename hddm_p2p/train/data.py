"""Training data: webdataset tar shards, plain image folders, and precomputed latent shards.

A source is resolved from one path or glob (``resolve_source``):
- ``*.tar`` / ``*.tar.gz`` files, or a directory holding them: webdataset shards with an image member
  (``jpg``/``jpeg``/``png``/``webp``), optionally ``cls`` (class id as text) and ``txt`` (caption);
- a directory with ``latents.json``: latent shards written by ``hddm data encode`` (``hddm_p2p.train.encode``);
- any other directory: an image folder (class = index of the sorted first-level sub-folder, if any).

Small data (CIFAR-10: 50k·3·32·32 uint8 = 150 MB) is decoded once into memory (``load_in_memory``) and
batched by ``EpochBatches``: the order is a permutation drawn from (seed, epoch), so the position
(epoch, offset) is the whole data-loader state. Large shard sets stream instead (``hddm_p2p.train.stream``).
A corrupt member or unreadable image is skipped with a warning and counted in ``skipped``.
Images are decoded to RGB, or to one grey channel with ``channels=1`` (greyscale data such as digits).
"""

from __future__ import annotations

import glob
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from hddm_p2p.errors import DataError, SpecError

log = logging.getLogger(__name__)
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
PIL_MODES = {1: "L", 3: "RGB"}  # channels → the PIL mode images are converted to
Tensor = torch.Tensor


@dataclass(frozen=True)
class Filter:
    """Restrict training to a cluster (keys) or to some classes (labels); None keeps everything."""

    keys: frozenset[str] | None = None
    labels: frozenset[int] | None = None
    limit: int | None = None

    def keep(self, key: str, label: int) -> bool:
        return (self.keys is None or key in self.keys) and (self.labels is None or label in self.labels)


@dataclass
class InMemoryData:
    """Decoded samples. ``x``: uint8 (N, C, R, R) pixels (C = 3, or 1 for greyscale) or float16 (N, C, h, w) latents."""

    x: Tensor
    labels: Tensor                      # (N,) long, −1 where unknown
    captions: list[str]
    keys: list[str]
    space: str                          # "pixel" | "latent"
    source: str
    skipped: int = 0
    meta: dict = field(default_factory=dict)  # latent shards: vae id, scaling factor, image resolution

    def __len__(self) -> int:
        return self.x.shape[0]

    def model_input(self, idx: Tensor, device, dtype=torch.float32) -> Tensor:
        """Samples ``idx`` as the network's input: pixels scaled to [−1, 1], latents as stored."""
        x = self.x.index_select(0, idx).to(device, non_blocking=True)
        return x.to(dtype) / 127.5 - 1 if self.space == "pixel" else x.to(dtype)


def resolve_source(source: str | Path) -> tuple[str, list[str]]:
    """(kind, files) for a path or glob; kind is "shards", "latents" or "folder". Raises ``DataError``."""
    s = str(source)
    if any(ch in s for ch in "*?["):
        files = sorted(glob.glob(s))
        if not files:
            raise DataError(f"no files match {s!r}; check the --data glob")
        return "shards", files
    p = Path(s)
    if not p.exists():
        raise DataError(f"data path {s} does not exist; pass a shard file, a glob, or a directory")
    if p.is_file():
        return "shards", [s]
    if (p / "latents.json").exists():
        return "latents", [str(p)]
    shards = sorted(str(f) for f in p.iterdir() if f.name.endswith((".tar", ".tar.gz", ".tgz")))
    return ("shards", shards) if shards else ("folder", [s])


def check_channels(channels: int) -> int:
    if channels not in PIL_MODES:
        raise SpecError(f"images can be decoded to 1 (grey) or 3 (RGB) channels, not {channels}")
    return channels


def decode_image(data: bytes, resolution: int, channels: int = 3) -> Tensor:
    """Image bytes → uint8 (C, R, R): RGB or grey, center-cropped to a square, resized if needed (bicubic)."""
    img = Image.open(io.BytesIO(data))
    img = img.convert(PIL_MODES[channels])
    w, h = img.size
    if w != h:
        m = min(w, h)
        img = img.crop(((w - m) // 2, (h - m) // 2, (w - m) // 2 + m, (h - m) // 2 + m))
    if img.size[0] != resolution:
        img = img.resize((resolution, resolution), Image.BICUBIC)
    return torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(resolution, resolution, channels).permute(
        2, 0, 1)


def _all_shards(urls):
    return urls


def raw_samples(urls: list[str]):
    """Raw webdataset samples (dicts of member bytes with ``__key__``), in shard order; corrupt tars warn."""
    import webdataset as wds

    # every process reads every shard it is given (under torchrun, ranks split batches, not shards)
    ds = wds.WebDataset(urls, shardshuffle=False, handler=wds.warn_and_continue, empty_check=False,
                        nodesplitter=_all_shards)
    yield from ds


def decode_sample(sample: dict, resolution: int, channels: int = 3) -> tuple[Tensor, int, str] | None:
    """(image, label, caption) of a raw sample, or None (warned) when it has no readable image."""
    key = sample.get("__key__", "?")
    ext = next((e for e in IMAGE_EXTS if e in sample), None)
    try:
        if ext is None:
            raise ValueError("no image member")
        img = decode_image(sample[ext], resolution, channels)
        label = int(sample["cls"].decode().strip()) if "cls" in sample else -1
        caption = sample["txt"].decode("utf-8", "replace").strip() if "txt" in sample else ""
    except Exception as e:  # PIL raises many types on corrupt bytes; skip and count, never die mid-run
        log.warning("skipping sample %s: %s", key, e)
        return None
    return img, label, caption


_CACHE: dict[tuple, InMemoryData] = {}


def load_in_memory(source: str | Path, resolution: int = 32, flt: Filter = Filter(), progress=None,
                   channels: int = 3) -> InMemoryData:
    """Decode a whole source into memory (cached per process); ``progress(n)`` is called per sample.
    ``channels`` (3 = RGB, 1 = grey) applies to images; latents keep the channels they were stored with."""
    kind, files = resolve_source(source)
    ck = (kind, tuple(files), resolution, flt, check_channels(channels))
    if ck not in _CACHE:
        loader = {"shards": _load_shards, "folder": _load_folder, "latents": _load_latents}[kind]
        data = loader(files, resolution, flt, progress, channels)
        if len(data) == 0:
            raise DataError(f"no usable samples in {source} after filtering ({data.skipped} skipped); "
                            "check the path, the cluster id or the label list")
        _CACHE[ck] = data
    return _CACHE[ck]


class Kept:
    """The samples of a (key, (image, label, caption) | None) stream that ``flt`` keeps, up to its limit, as
    (key, image, label, caption); ``progress`` is told of every sample read, ``skipped`` counts those that did not
    decode. Iterate once."""

    def __init__(self, items, flt: Filter, progress=None):
        self.items, self.flt, self.progress, self.skipped = items, flt, progress, 0

    def __iter__(self):
        count = 0
        for key, decoded in self.items:
            if self.progress:
                self.progress(1)
            if decoded is None:
                self.skipped += 1
                continue
            img, label, caption = decoded
            if not self.flt.keep(key, label):
                continue
            yield key, img, label, caption
            count += 1
            if self.flt.limit is not None and count >= self.flt.limit:
                return


def _collect(items, flt: Filter, progress) -> tuple[list, list, list, list, int]:
    kept, xs, labels, caps, keys = Kept(items, flt, progress), [], [], [], []
    for key, img, label, caption in kept:
        xs.append(img), labels.append(label), caps.append(caption), keys.append(key)
    return xs, labels, caps, keys, kept.skipped


def _to_data(parts, space: str, source: str, resolution: int, channels: int = 3) -> InMemoryData:
    xs, labels, caps, keys, skipped = parts
    x = torch.stack(xs) if xs else torch.empty(0, channels, resolution, resolution, dtype=torch.uint8)
    return InMemoryData(x, torch.tensor(labels, dtype=torch.long), caps, keys, space, source, skipped)


def iter_samples(kind: str, files: list[str], resolution: int, channels: int = 3):
    """Stream (key, (image, label, caption) | None) from shards or an image folder, without holding them."""
    if kind == "shards":
        for s in raw_samples(files):
            yield s.get("__key__", "?"), decode_sample(s, resolution, channels)
        return
    root = Path(files[0])
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower().lstrip(".") in IMAGE_EXTS)
    if not paths:
        raise DataError(f"no images ({', '.join(IMAGE_EXTS)}) under {root}")
    classes = folder_classes(root, paths)
    for p in paths:
        rel = p.relative_to(root)
        label = classes.index(rel.parts[0]) if len(rel.parts) > 1 else -1
        try:
            data = p.read_bytes()
        except OSError as e:
            log.warning("skipping %s: %s", p, e)
            yield str(rel.with_suffix("")), None
            continue
        yield str(rel.with_suffix("")), decode_sample({"__key__": str(rel), "jpg": data, "cls": str(label).encode()},
                                                      resolution, channels)


def folder_classes(root: Path, paths: list[Path] | None = None) -> list[str]:
    """Sorted first-level sub-folder names that hold images: the class names of an image folder."""
    paths = paths if paths is not None else [p for p in root.rglob("*") if p.suffix.lower().lstrip(".") in IMAGE_EXTS]
    return sorted({p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1})


def _load_shards(files, resolution, flt, progress, channels=3) -> InMemoryData:
    return _to_data(_collect(iter_samples("shards", files, resolution, channels), flt, progress), "pixel",
                    ",".join(files), resolution, channels)


def _load_folder(files, resolution, flt, progress, channels=3) -> InMemoryData:
    data = _to_data(_collect(iter_samples("folder", files, resolution, channels), flt, progress), "pixel", files[0],
                    resolution, channels)
    data.meta["class_names"] = folder_classes(Path(files[0])) or None
    return data


def _load_latents(files, resolution, flt, progress, channels=3) -> InMemoryData:
    from hddm_p2p.train.encode import read_latent_shards

    return read_latent_shards(Path(files[0]), flt)


@dataclass
class Batch:
    """One training batch: ``x`` uint8 pixels (B, C, R, R) or float16 latents, labels, captions; x and labels
    on the CPU, or already on the GPU when the source keeps its samples there (``MemorySource.to``)."""

    x: Tensor
    labels: Tensor
    captions: list[str]
    space: str

    def model_input(self, device, dtype=torch.float32) -> Tensor:
        x = self.x.to(device, non_blocking=True)
        return x.to(dtype) / 127.5 - 1 if self.space == "pixel" else x.to(dtype)


class MemorySource:
    """Batches of ``InMemoryData`` in the (seed, epoch) order of ``EpochBatches``; the loop's data source.

    ``to(device)`` keeps the samples on a GPU when they fit: each batch is then gathered there by indices
    from the epoch's permutation, copied to the GPU once per epoch. A batch copied from pageable host memory
    instead makes the host wait, every step, for the GPU to finish the step before (CUDA synchronises the
    stream before such a copy), so the host could not queue the next step's kernels ahead of the GPU.
    """

    def __init__(self, data: InMemoryData, batch_size: int, seed: int):
        self.data, self.order = data, EpochBatches(len(data), batch_size, seed)
        self._resident: tuple[Tensor, Tensor] | None = None  # (x, labels) on the device (``to``)
        self._order_on_device: tuple[int, Tensor] | None = None  # (epoch, its permutation on the device)

    def to(self, device, budget: float = 0.25) -> bool:
        """Keep the samples on ``device`` if it is a GPU and they take at most ``budget`` of its free
        memory; True when they are there now. The order of the batches does not change."""
        device = torch.device(device)
        if device.type != "cuda":
            return False
        free, _ = torch.cuda.mem_get_info(device)
        if self.data.x.nbytes > budget * free:
            return False
        self._resident, self._order_on_device = (self.data.x.to(device), self.data.labels.to(device)), None
        return True

    @property
    def device(self) -> torch.device | None:
        """Where the samples are kept when resident (``to``), else None."""
        return self._resident[0].device if self._resident is not None else None

    def next(self) -> Batch:
        idx = self.order.next()
        d = self.data
        captions = [d.captions[i] for i in idx.tolist()]
        if self._resident is None:
            return Batch(d.x.index_select(0, idx), d.labels.index_select(0, idx), captions, d.space)
        epoch, stop = self.order.epoch, self.order.offset
        if self._order_on_device is None or self._order_on_device[0] != epoch:
            self._order_on_device = (epoch, self.order.permutation().to(self.device))
        dev_idx = self._order_on_device[1][stop - len(idx):stop]  # the same indices as idx, on the GPU
        x, labels = self._resident
        return Batch(x.index_select(0, dev_idx), labels.index_select(0, dev_idx), captions, d.space)

    @property
    def epoch(self) -> int:
        return self.order.epoch

    @property
    def skipped(self) -> int:
        return self.data.skipped

    def state_dict(self) -> dict:
        return self.order.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.order.load_state_dict(state)


class EpochBatches:
    """Index batches in a permutation drawn from (seed, epoch); state = (epoch, offset). Drops the tail."""

    def __init__(self, n: int, batch_size: int, seed: int):
        if n < batch_size:
            raise DataError(f"only {n} samples but --batch-size is {batch_size}; use a smaller batch")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.offset = 0, 0
        self._perm: Tensor | None = None

    def permutation(self) -> Tensor:
        """This epoch's order of the sample indices (CPU); ``next`` hands it out ``batch_size`` at a time."""
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(self.n, generator=g)
        return self._perm

    def next(self) -> Tensor:
        if self.offset + self.batch_size > self.n:
            self.epoch, self.offset, self._perm = self.epoch + 1, 0, None
        idx = self.permutation()[self.offset:self.offset + self.batch_size]
        self.offset += self.batch_size
        return idx

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.offset, self._perm = int(state["epoch"]), int(state["offset"]), None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file in the same directory and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
