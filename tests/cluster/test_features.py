import numpy as np
import pytest
from PIL import Image

from hddm_p2p.cluster.features import extractor_from_id, make_extractor
from hddm_p2p.errors import SpecError


def _images(n=3, size=32):
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def test_pixels_are_block_means():
    im = Image.fromarray(np.full((32, 32, 3), 51, np.uint8))
    f = make_extractor("pixels")([im])
    assert f.shape == (1, 192) and np.allclose(f, 0.2)
    assert make_extractor("pixels-4x4")([im]).shape == (1, 48)


def test_random_timm_vit_is_reproducible_from_its_id():
    ex = make_extractor("timm:vit_tiny_patch16_224:random")
    assert ex.id == "timm:vit_tiny_patch16_224:random" and ex.dim == 192
    again = extractor_from_id(ex.id)
    ims = _images()
    a, b = ex(ims), again(ims)
    assert a.shape == (3, 192) and np.array_equal(a, b) and np.isfinite(a).all()
    assert not np.allclose(a[0], a[1])  # different images, different features


@pytest.mark.parametrize("spec", ["resnet", "pixels-4x5", "timm:no_such_model_xyz:random"])
def test_unknown_extractor(spec):
    with pytest.raises(SpecError):
        make_extractor(spec)
