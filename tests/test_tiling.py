"""Tile arithmetic, blend weights and tiled_upscale against a one-pass run."""

import numpy as np
import pytest
import torch

from f2n.errors import ConfigError, F2NError, InputImageError
from f2n.nets import RRDBNet
from f2n.runtime.demo import psnr
from f2n.runtime.tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    TileBox,
    blend_weights,
    tile_boxes,
    tile_starts,
    tiled_upscale,
)
from f2n.runtime.torch_engine import TorchEngine


@pytest.fixture(scope="module")
def tiny_engine() -> TorchEngine:
    torch.manual_seed(0)
    return TorchEngine(RRDBNet(num_block=2, num_feat=8, num_grow_ch=4))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.random((13, 17, 3)).astype(np.float32)
    import cv2

    return np.clip(cv2.resize(base, (140, 100), interpolation=cv2.INTER_CUBIC), 0, 1)


@pytest.mark.parametrize("length,tile,overlap", [(1, 192, 32), (192, 192, 32), (193, 192, 32), (500, 64, 16), (97, 40, 0)])
def test_tile_starts_cover_with_overlap(length: int, tile: int, overlap: int) -> None:
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    for a, b in zip(starts, starts[1:]):
        assert a < b and a + size - b >= overlap


@pytest.mark.parametrize("height,width", [(150, 211), (1, 300), (64, 64), (97, 33)])
def test_blend_weights_sum_to_one(height: int, width: int) -> None:
    tile, overlap = 48, 16
    total = np.zeros((height * 4, width * 4), np.float64)
    for box in tile_boxes(height, width, tile, overlap):
        total[box.y0 * 4 : box.y1 * 4, box.x0 * 4 : box.x1 * 4] += blend_weights(box, height, width, overlap)
    # Where exactly two neighbours overlap by the nominal amount the weights form a
    # partition of unity; elsewhere they are normalised, so they only need to be > 0.
    assert total.min() > 0.2


def test_blend_weights_ignore_inner_edge_quarter() -> None:
    weights = blend_weights(TileBox(32, 96, 0, 64), 200, 64, 16)
    assert np.all(weights[: 16 * 4 // 4] == 0)  # first quarter of the overlap, in HR px
    assert np.all(weights[:, :] >= 0) and weights[100, 10] == 1.0


def test_tiled_matches_one_pass_at_defaults(tiny_engine: TorchEngine, photo: np.ndarray) -> None:
    import cv2

    large = cv2.resize(photo, (250, 210), interpolation=cv2.INTER_CUBIC)  # 2 x 2 default tiles
    assert len(tile_boxes(210, 250, DEFAULT_TILE, DEFAULT_OVERLAP)) == 4
    tiled = tiled_upscale(tiny_engine, large, batch_size=2)
    one_pass = tiled_upscale(tiny_engine, large, tile=1024, overlap=0)
    assert tiled.shape == (840, 1000, 3) and tiled.dtype == np.float32
    assert psnr(tiled, one_pass) >= 45.0


def test_tiled_without_overlap_shows_seams(tiny_engine: TorchEngine, photo: np.ndarray) -> None:
    """Negative control: the 45 dB above is not free; hard tile edges lose it."""
    torch.manual_seed(1)
    deep = TorchEngine(RRDBNet(num_block=4, num_feat=8, num_grow_ch=4))
    crop = photo[:80, :80]
    seamed = tiled_upscale(deep, crop, tile=40, overlap=0)
    one_pass = tiled_upscale(deep, crop, tile=1024, overlap=0)
    feathered = tiled_upscale(deep, crop, tile=64, overlap=DEFAULT_OVERLAP)
    assert psnr(feathered, one_pass) > psnr(seamed, one_pass)


@pytest.mark.parametrize(
    "shape,dtype",
    [((37, 23, 3), np.uint8), ((1, 9, 3), np.uint8), ((9, 1, 3), np.float32), ((21, 19), np.uint8),
     ((21, 19, 1), np.uint16), ((25, 31, 4), np.uint8)],
)
def test_layouts_pass_through(tiny_engine: TorchEngine, shape: tuple[int, ...], dtype: type) -> None:
    rng = np.random.default_rng(3)
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    image = (rng.random(shape) * top).astype(dtype)
    out = tiled_upscale(tiny_engine, image, tile=DEFAULT_TILE, overlap=DEFAULT_OVERLAP)
    assert out.dtype == image.dtype
    assert out.shape == (shape[0] * 4, shape[1] * 4, *shape[2:])
    if len(shape) == 3 and shape[2] == 4:  # alpha is upscaled on its own, not by the network
        import cv2

        expected = cv2.resize(image[:, :, 3].astype(np.float32) / 255, (shape[1] * 4, shape[0] * 4), interpolation=cv2.INTER_CUBIC)
        assert np.abs(out[:, :, 3].astype(np.float32) / 255 - np.clip(expected, 0, 1)).max() <= 1 / 255 + 1e-6


def test_grayscale_goes_through_the_network(tiny_engine: TorchEngine) -> None:
    gray = np.linspace(0, 1, 20 * 24, dtype=np.float32).reshape(20, 24)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    out = tiled_upscale(tiny_engine, gray)
    luma = np.array([0.299, 0.587, 0.114], np.float32)  # what RGB -> gray uses
    np.testing.assert_allclose(out, np.clip(tiled_upscale(tiny_engine, rgb) @ luma, 0, 1), atol=1e-4)


class _NanEngine:
    """Returns NaN for the first tile of every batch in low precision, sane values in fp32."""

    name = "nan-test"

    def __init__(self, with_retry: bool) -> None:
        self.inner = TorchEngine(RRDBNet(num_block=1, num_feat=8, num_grow_ch=4))
        if with_retry:
            self.run_fp32 = self.inner.run

    def set_weights(self, state_dict) -> None:
        self.inner.set_weights(state_dict)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        out = self.inner.run(tiles).clone()
        out[0] = float("nan")
        return out


def test_nan_tiles_are_redone_in_fp32(photo: np.ndarray) -> None:
    torch.manual_seed(0)
    engine = _NanEngine(with_retry=True)
    out = tiled_upscale(engine, photo, tile=48, overlap=16, batch_size=3)
    reference = tiled_upscale(engine.inner, photo, tile=48, overlap=16, batch_size=3)
    np.testing.assert_allclose(out, reference, atol=1e-6)


def test_nan_without_retry_is_an_error(photo: np.ndarray) -> None:
    with pytest.raises(F2NError, match="NaN"):
        tiled_upscale(_NanEngine(with_retry=False), photo, tile=64, overlap=16)


class _OomOnceEngine:
    name = "oom-test"

    def __init__(self, limit: int) -> None:
        self.inner = TorchEngine(RRDBNet(num_block=1, num_feat=8, num_grow_ch=4))
        self.limit = limit
        self.sizes: list[int] = []

    def set_weights(self, state_dict) -> None:
        self.inner.set_weights(state_dict)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        self.sizes.append(int(tiles.shape[-1]))
        if tiles.shape[-1] > self.limit:
            raise torch.OutOfMemoryError("test: tile too large")
        return self.inner.run(tiles)


def test_oom_halves_the_tile(photo: np.ndarray) -> None:
    engine = _OomOnceEngine(limit=64)
    out = tiled_upscale(engine, photo, tile=128, overlap=32)
    assert out.shape == (400, 560, 3)
    assert engine.sizes[0] == 128 and set(engine.sizes[1:]) == {64}


@pytest.mark.parametrize("tile,overlap,batch", [(8, 0, 1), (64, 40, 1), (64, -1, 1), (64, 16, 0)])
def test_bad_tiling_options(tiny_engine: TorchEngine, tile: int, overlap: int, batch: int) -> None:
    with pytest.raises(ConfigError):
        tiled_upscale(tiny_engine, np.zeros((8, 8, 3), np.float32), tile=tile, overlap=overlap, batch_size=batch)


def test_bad_images(tiny_engine: TorchEngine) -> None:
    with pytest.raises(InputImageError, match="shape"):
        tiled_upscale(tiny_engine, np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(InputImageError, match="dtype"):
        tiled_upscale(tiny_engine, np.zeros((8, 8, 3), np.int32))
