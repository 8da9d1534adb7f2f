"""Tile arithmetic, blend weights and tiled_upscale against a one-pass run."""

import numpy as np
import pytest
import torch
from conftest import TINY_RRDBNET, TinyRRDBNet

from f2n.errors import ConfigError, F2NError, InputImageError
from f2n.export.torch_engine import TorchEngine
from f2n.nets import RRDBNet
from f2n.runtime.images import PixelCanvas
from f2n.runtime.psnr import psnr
from f2n.runtime.tiling import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    TileBox,
    blend_weights,
    tile_boxes,
    tile_starts,
    tiled_upscale,
    upscale_in_bands,
)


@pytest.fixture(scope="module")
def tiny_engine(tiny_rrdbnet: TinyRRDBNet) -> TorchEngine:
    return TorchEngine(tiny_rrdbnet(num_block=2))


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


@pytest.mark.parametrize("height,width", [(144, 112), (48, 80), (1, 176), (144, 48)])
def test_blend_weights_sum_to_one_on_a_regular_grid(height: int, width: int) -> None:
    """Tiles of 48 with overlap 16 start every 32 px: where the grid is regular (each side
    is 48 + 32k) the raw feathered weights are a partition of unity, before any normalising."""
    tile, overlap = 48, 16
    total = np.zeros((height * 4, width * 4), np.float64)
    for box in tile_boxes(height, width, tile, overlap):
        total[box.y0 * 4 : box.y1 * 4, box.x0 * 4 : box.x1 * 4] += blend_weights(box, height, width, overlap)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("height,width", [(150, 211), (97, 33)])
def test_blend_weights_cover_every_pixel_on_an_irregular_grid(height: int, width: int) -> None:
    """The last tile overlaps its neighbour by more than nominal: the weights may exceed one
    there (tiled_upscale divides by their sum), but no output pixel is left without weight."""
    tile, overlap = 48, 16
    total = np.zeros((height * 4, width * 4), np.float64)
    for box in tile_boxes(height, width, tile, overlap):
        total[box.y0 * 4 : box.y1 * 4, box.x0 * 4 : box.x1 * 4] += blend_weights(box, height, width, overlap)
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


def test_tiled_without_overlap_shows_seams(tiny_rrdbnet: TinyRRDBNet, tiny_engine: TorchEngine,
                                          photo: np.ndarray) -> None:
    """Negative control: the 45 dB above is not free; hard tile edges lose it."""
    deep = TorchEngine(tiny_rrdbnet(1, num_block=4))
    crop = photo[:80, :80]
    seamed = tiled_upscale(deep, crop, tile=40, overlap=0)
    one_pass = tiled_upscale(deep, crop, tile=1024, overlap=0)
    feathered = tiled_upscale(deep, crop, tile=64, overlap=DEFAULT_OVERLAP)
    assert psnr(feathered, one_pass) > psnr(seamed, one_pass)


@pytest.mark.parametrize("shape", [(1, 9, 3), (9, 1, 3), (37, 23, 3)])
def test_float_rgb_in_float_rgb_out(tiny_engine: TorchEngine, shape: tuple[int, int, int]) -> None:
    image = np.random.default_rng(3).random(shape, dtype=np.float32)
    out = tiled_upscale(tiny_engine, image)
    assert out.dtype == np.float32 and out.shape == (shape[0] * 4, shape[1] * 4, 3)
    assert 0.0 <= out.min() and out.max() <= 1.0


@pytest.mark.parametrize("image", [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.float32),
                                   np.zeros((8, 8, 4), np.float32), np.zeros((8, 8, 3), np.float64)])
def test_anything_but_float_rgb_is_the_image_layers_job(tiny_engine: TorchEngine, image: np.ndarray) -> None:
    with pytest.raises(InputImageError, match="float32 RGB"):
        tiled_upscale(tiny_engine, image)


class _NanEngine:
    """Returns NaN for the first tile of every batch in low precision, sane values in fp32
    (``sane_fp32`` False: NaN there too)."""

    name = "nan-test"

    def __init__(self, sane_fp32: bool) -> None:
        self.inner = TorchEngine(RRDBNet(**TINY_RRDBNET))
        self.run_fp32 = self.inner.run if sane_fp32 else self.run

    def set_weights(self, state_dict) -> None:
        self.inner.set_weights(state_dict)

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        out = self.inner.run(tiles).clone()
        out[0] = float("nan")
        return out


def test_nan_tiles_are_redone_in_fp32(photo: np.ndarray) -> None:
    torch.manual_seed(0)
    engine = _NanEngine(sane_fp32=True)
    out = tiled_upscale(engine, photo, tile=48, overlap=16, batch_size=3)
    reference = tiled_upscale(engine.inner, photo, tile=48, overlap=16, batch_size=3)
    np.testing.assert_allclose(out, reference, atol=1e-6)


def test_nan_even_in_fp32_is_an_error(photo: np.ndarray) -> None:
    with pytest.raises(F2NError, match="NaN/Inf even in fp32"):
        tiled_upscale(_NanEngine(sane_fp32=False), photo, tile=64, overlap=16)


class _OomOnceEngine:
    name = "oom-test"

    def __init__(self, limit: int) -> None:
        self.inner = TorchEngine(RRDBNet(**TINY_RRDBNET))
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
    with pytest.raises(InputImageError, match=r"got shape \(8, 8, 2\)"):
        tiled_upscale(tiny_engine, np.zeros((8, 8, 2), np.float32))
    with pytest.raises(InputImageError, match="int32"):
        tiled_upscale(tiny_engine, np.zeros((8, 8, 3), np.int32))


@pytest.mark.parametrize(("height", "width", "tile", "overlap"), [(100, 77, 32, 8), (200, 190, 48, 12), (33, 65, 32, 0)])
def test_the_weight_sum_needs_no_full_size_canvas(height: int, width: int, tile: int, overlap: int) -> None:
    """The 1-D sums tiled_upscale divides by give the sum of every tile's 2-D blend weights."""
    from f2n.runtime.tiling import _axis_weight_sums, blend_weights, tile_boxes

    full = np.zeros((height * 4, width * 4), np.float32)
    for box in tile_boxes(height, width, tile, overlap):
        full[box.y0 * 4:box.y1 * 4, box.x0 * 4:box.x1 * 4] += blend_weights(box, height, width, overlap)
    separable = np.outer(_axis_weight_sums(height, tile, overlap), _axis_weight_sums(width, tile, overlap))
    np.testing.assert_allclose(separable, full, atol=1e-6)


def test_bands_equal_blending_on_a_whole_canvas(tiny_engine: TorchEngine, photo: np.ndarray) -> None:
    """Three rows of overlapping tiles, each row's float band handed on once no later tile reaches
    it: the same as adding every weighted tile into one float canvas and dividing by the weights."""
    height, width = photo.shape[:2]
    assert len(tile_starts(height, 48, 16)) == 3
    total = np.zeros((height * 4, width * 4, 3), np.float64)
    weight = np.zeros((height * 4, width * 4, 1), np.float64)
    for box in tile_boxes(height, width, 48, 16):
        tile = torch.from_numpy(np.ascontiguousarray(photo[box.y0:box.y1, box.x0:box.x1])).permute(2, 0, 1)[None]
        sr = tiny_engine.run(tile)[0].permute(1, 2, 0).numpy()
        weights = blend_weights(box, height, width, 16)[:, :, None]
        total[box.y0 * 4:box.y1 * 4, box.x0 * 4:box.x1 * 4] += sr * weights
        weight[box.y0 * 4:box.y1 * 4, box.x0 * 4:box.x1 * 4] += weights
    rows: list[int] = []
    out = np.full((height * 4, width * 4, 3), np.nan, np.float32)

    def store(row: int, band: np.ndarray) -> None:
        rows.append(row)
        out[row:row + len(band)] = band

    upscale_in_bands(tiny_engine, photo, store, tile=48, overlap=16, batch_size=2)
    assert rows == sorted(set(rows)) and len(rows) == 3  # top to bottom, each band once
    np.testing.assert_allclose(out, np.clip(total / weight, 0, 1), atol=2e-6)


@pytest.mark.parametrize(("bit_depth", "grayscale"), [(8, False), (16, False), (8, True), (16, True)])
def test_an_integer_canvas_holds_the_rounded_float_output(tiny_engine: TorchEngine, photo: np.ndarray,
                                                          bit_depth: int, grayscale: bool) -> None:
    """Tiles stored band by band into uint8/uint16 pixels give round(clip(float output) * top) of
    the same tiles: no truncation, no lost precision, the gray mean taken before rounding."""
    float_out = tiled_upscale(tiny_engine, photo, tile=48, overlap=16)
    canvas = PixelCanvas.empty(*float_out.shape[:2], bit_depth=bit_depth, grayscale=grayscale)
    upscale_in_bands(tiny_engine, photo, canvas.store, tile=48, overlap=16)
    top, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    expected = np.clip(float_out, 0, 1)  # float32, as a float photo is written
    expected = expected.mean(axis=2, keepdims=True) if grayscale else expected
    assert canvas.pixels.dtype == dtype and canvas.pixels.shape == (*float_out.shape[:2], 1 if grayscale else 3)
    np.testing.assert_array_equal(canvas.pixels, np.round(expected * top).astype(dtype))
