"""Data sources on real CIFAR-10 bytes: shards with corrupt members, image folders, the shard stream."""

import itertools
import logging

import pytest
import torch
import webdataset as wds

from hddm_p2p.errors import DataError, SpecError
from hddm_p2p.train.data import Filter, MemorySource, load_in_memory, raw_samples, resolve_source
from hddm_p2p.train.stream import ShardStream


@pytest.fixture(scope="module")
def real_samples(cifar_shard):
    return list(itertools.islice(raw_samples([str(cifar_shard)]), 40))


@pytest.fixture(scope="module")
def shards(tmp_path_factory, real_samples):
    """Two tar shards of 20 real samples each; shard 0 has a corrupt JPEG and a sample with no image."""
    root = tmp_path_factory.mktemp("shards")
    for s in range(2):
        with wds.TarWriter(str(root / f"part-{s}.tar")) as sink:
            for i, sample in enumerate(real_samples[20 * s:20 * (s + 1)]):
                sample = {k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"}
                if s == 0 and i == 3:
                    sample["jpg"] = b"\xff\xd8 not a jpeg"
                if s == 0 and i == 5:
                    sample.pop("jpg")
                sink.write(sample)
    return root


def test_corrupt_members_are_skipped_with_a_warning_and_counted(shards, caplog):
    with caplog.at_level(logging.WARNING):
        data = load_in_memory(shards, 32)
    assert len(data) == 38 and data.skipped == 2
    assert sum("skipping sample" in r.message for r in caplog.records) == 2
    assert data.x.dtype == torch.uint8 and data.x.shape == (38, 3, 32, 32)
    assert data.captions[0].startswith("a photo of")


def test_image_folder_with_class_subfolders(tmp_path, real_samples):
    for i, s in enumerate(real_samples[:6]):
        d = tmp_path / ("cats" if i % 2 else "dogs")
        d.mkdir(exist_ok=True)
        (d / f"{i}.jpg").write_bytes(s["jpg"])
    (tmp_path / "dogs" / "broken.png").write_bytes(b"nope")
    assert resolve_source(tmp_path)[0] == "folder"
    data = load_in_memory(tmp_path, 16)
    assert len(data) == 6 and data.skipped == 1 and data.x.shape[-1] == 16
    assert data.meta["class_names"] == ["cats", "dogs"] and sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_grey_images_decode_to_one_channel_on_request(tmp_path, real_samples):
    for i, s in enumerate(real_samples[:3]):
        (tmp_path / f"{i}.jpg").write_bytes(s["jpg"])  # colour JPEGs become luma with channels=1
    rgb, grey = load_in_memory(tmp_path, 16), load_in_memory(tmp_path, 16, channels=1)
    assert rgb.x.shape == (3, 3, 16, 16) and grey.x.shape == (3, 1, 16, 16)
    luma = (rgb.x.float() * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    assert (grey.x.float() - luma).abs().max() <= 1.5  # PIL's "L" conversion (ITU-R 601-2 luma)
    with pytest.raises(SpecError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        load_in_memory(tmp_path, 16, channels=2)


def test_label_filter_and_memory_source(cifar_small):
    keep = load_in_memory(cifar_small.source, 32, Filter(labels=frozenset({3}), limit=8))
    assert len(keep) == 8 and (keep.labels == 3).all()
    src = MemorySource(cifar_small, 16, seed=0)
    batch = src.next()
    assert batch.x.shape == (16, 3, 32, 32) and len(batch.captions) == 16
    x = batch.model_input("cpu")
    assert x.min() >= -1 and x.max() <= 1


def _resident_batches(data, device, n, resident=None):
    src = MemorySource(data, 24, seed=3)
    if resident is not None:  # the GPU path's bookkeeping with the device tensors stood in for by CPU ones
        src._resident = resident
    elif not src.to(device):
        pytest.fail("the samples did not move to the GPU")
    return [src.next() for _ in range(n)], src


def test_resident_batches_are_the_host_batches_across_epochs(cifar_small):
    """Gathering on the device by the epoch's permutation gives the host path's batches, in order, through
    epoch boundaries (the tail dropped), and the resume state is the same."""
    n = 2 * (len(cifar_small) // 24) + 1  # into a third epoch
    src_host = MemorySource(cifar_small, 24, seed=3)
    host = [src_host.next() for _ in range(n)]
    dev, src_dev = _resident_batches(cifar_small, None, n, resident=(cifar_small.x, cifar_small.labels))
    assert src_dev.order.epoch == src_host.order.epoch == 2
    for a, b in zip(host, dev):
        assert torch.equal(a.x, b.x) and torch.equal(a.labels, b.labels) and a.captions == b.captions
    assert src_dev.state_dict() == src_host.state_dict()
    assert not MemorySource(cifar_small, 24, seed=3).to("cpu")  # a CPU device: nothing moves


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resident_batches_on_the_gpu(cifar_small):
    src_host = MemorySource(cifar_small, 24, seed=3)
    host = [src_host.next() for _ in range(5)]  # into a third epoch: 64 samples make two batches each
    dev, src = _resident_batches(cifar_small, "cuda", 5)
    assert src.device.type == "cuda" and all(b.x.is_cuda and b.labels.is_cuda for b in dev)
    for a, b in zip(host, dev):
        assert torch.equal(a.x, b.x.cpu()) and torch.equal(a.labels, b.labels.cpu())


def _keys_of(stream, n):
    return [stream.next().captions for _ in range(n)]


def test_stream_order_is_a_function_of_seed_and_resumes_exactly(shards):
    files = [str(p) for p in sorted(shards.glob("*.tar"))]
    a = ShardStream(files, 32, 4, seed=1, buffer_size=8)
    seq = [a.next() for _ in range(12)]  # 48 samples: crosses into epoch 1 (38 usable per epoch)
    assert a.epoch == 1 and a.skipped >= 2
    b = ShardStream(files, 32, 4, seed=1, buffer_size=8)
    for _ in range(5):
        b.next()
    state = b.state_dict()
    c = ShardStream(files, 32, 4, seed=1, buffer_size=8)
    c.load_state_dict(state)
    for want in seq[5:]:
        got = c.next()
        assert torch.equal(got.x, want.x) and torch.equal(got.labels, want.labels)
    other = ShardStream(files, 32, 4, seed=2, buffer_size=8).next()
    assert not torch.equal(other.x, seq[0].x)
    epoch0 = torch.cat([s.x for s in seq[:10]])[:38]
    assert len({bytes(x.numpy()) for x in epoch0}) == 38  # each usable sample once per epoch


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        load_in_memory(tmp_path / "empty", 32)
