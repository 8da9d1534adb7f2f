"""Tiled x4 inference: tile coordinates and feathered blend weights (pure functions),
and ``tiled_upscale``, which runs any :class:`~f2n.runtime.types.SREngine` tile by tile
so that engine memory is bounded by the tile size, not the photo size.

Blending: neighbouring tiles overlap by ``overlap`` LR pixels. Inside an overlap each
tile's weight ramps linearly from 0 to 1 across the middle half of the overlap, so the
quarter nearest a tile's inner edge (where zero padding distorts the output) is never
used, and the weights of two neighbours sum to one.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from f2n.errors import ConfigError, F2NError, InputImageError
from f2n.export.protocol import SREngine
from f2n.runtime.types import SCALE

DEFAULT_TILE = 192  # LR pixels
DEFAULT_OVERLAP = 32  # LR pixels; Real-ESRGAN users report visible seams with less padding than ~32
DEFAULT_BATCH_SIZE = 1
MIN_TILE = 16  # LR pixels: halving on OOM stops here


@dataclass(frozen=True)
class TileBox:
    """One tile in LR pixels: rows [y0, y1), columns [x0, x1)."""

    y0: int
    y1: int
    x0: int
    x1: int


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``min(tile, length)`` covering ``[0, length)``;
    consecutive tiles overlap by at least ``overlap``, the last one ends at ``length``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def tile_boxes(height: int, width: int, tile: int, overlap: int) -> list[TileBox]:
    """Row-major grid of equally sized tiles covering an ``height`` x ``width`` image."""
    tile_h, tile_w = min(tile, height), min(tile, width)
    return [
        TileBox(y0, y0 + tile_h, x0, x0 + tile_w)
        for y0 in tile_starts(height, tile, overlap)
        for x0 in tile_starts(width, tile, overlap)
    ]


def feather_ramp(length: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    """1-D blend weights (float32, ``length`` values) of one tile along one axis, in the
    units of ``length``. A side ramps only where it has a neighbour (``ramp_*``)."""
    centres = np.arange(length, dtype=np.float64) + 0.5
    weights = np.ones(length, dtype=np.float64)
    if overlap > 0:
        def ramp(distance: np.ndarray) -> np.ndarray:
            return np.clip((distance - overlap / 4) / (overlap / 2), 0.0, 1.0)

        if ramp_start:
            weights *= ramp(centres)
        if ramp_end:
            weights *= ramp(length - centres)
    return weights.astype(np.float32)


def blend_weights(box: TileBox, height: int, width: int, overlap: int, scale: int = SCALE) -> np.ndarray:
    """2-D blend weights (``scale`` x the tile's size) of ``box`` in an image of
    ``height`` x ``width`` LR pixels."""
    wy = feather_ramp((box.y1 - box.y0) * scale, overlap * scale, box.y0 > 0, box.y1 < height)
    wx = feather_ramp((box.x1 - box.x0) * scale, overlap * scale, box.x0 > 0, box.x1 < width)
    return np.outer(wy, wx)


def check_tiling(tile: int, overlap: int, batch_size: int) -> None:
    if tile < MIN_TILE:
        raise ConfigError(f"tile must be at least {MIN_TILE} LR px, got {tile}")
    if not 0 <= overlap <= tile // 2:
        raise ConfigError(f"tile overlap must be in [0, tile/2 = {tile // 2}] LR px, got {overlap}")
    if batch_size < 1:
        raise ConfigError(f"tile batch size must be >= 1, got {batch_size}")


BandSink = Callable[[int, np.ndarray], None]
"""Takes (first x4 row, finished band): (rows, 4W, 3) float32 in [0, 1], a view it may change
but must not keep (the next band reuses the memory)."""


def tiled_upscale(
    engine: SREngine,
    rgb: np.ndarray,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> np.ndarray:
    """Upscale ``rgb`` ((H, W, 3) float32 in [0, 1]) x4 with ``engine``, tile by tile, to
    (4H, 4W, 3) float32 in [0, 1]. Alpha, grayscale and integer pixels are the image I/O
    layer's business (:mod:`f2n.runtime.images`); :func:`upscale_in_bands` hands the result
    over in bands instead, for a caller that stores it in another form.
    """
    check_tiling(tile, overlap, batch_size)
    height, width = _checked_size(rgb)
    out = np.empty((height * SCALE, width * SCALE, 3), dtype=np.float32)

    def store(row: int, band: np.ndarray) -> None:
        out[row:row + len(band)] = band

    upscale_in_bands(engine, rgb, store, tile=tile, overlap=overlap, batch_size=batch_size, progress=progress)
    return out


def upscale_in_bands(
    engine: SREngine,
    rgb: np.ndarray,
    sink: BandSink,
    *,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> None:
    """``tiled_upscale`` without a whole float output: each band of x4 rows goes to ``sink`` as
    soon as no later tile touches it, top to bottom, blended, normalised and clipped. Only one
    row of tiles is held in float (issue 27: a 3 MP photo's float x4 canvas is 576 MB). Tiles
    that come out with NaN/Inf are redone through the engine's ``run_fp32``. On CUDA out-of-memory
    the tile is halved and the image restarted (``sink`` then sees its rows again from the top).
    """
    check_tiling(tile, overlap, batch_size)
    _checked_size(rgb)
    rgb = np.ascontiguousarray(rgb)
    while True:
        try:
            return _upscale_rgb(engine, rgb, sink, tile, overlap, batch_size, progress)
        except torch.OutOfMemoryError:
            if tile // 2 < MIN_TILE:
                raise
            tile, overlap = tile // 2, min(overlap, tile // 4)
            torch.cuda.empty_cache()


def _checked_size(rgb: np.ndarray) -> tuple[int, int]:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1 or rgb.dtype != np.float32:
        raise InputImageError(f"tiled_upscale takes (H, W, 3) float32 RGB with H, W >= 1, "
                              f"got shape {rgb.shape} {rgb.dtype}")
    return rgb.shape[0], rgb.shape[1]


def _batches(boxes: list[TileBox], batch_size: int) -> Iterator[list[TileBox]]:
    for start in range(0, len(boxes), batch_size):
        yield boxes[start : start + batch_size]


def _upscale_rgb(engine: SREngine, rgb: np.ndarray, sink: BandSink, tile: int, overlap: int, batch_size: int,
                 progress: bool) -> None:
    height, width = rgb.shape[:2]
    boxes = tile_boxes(height, width, tile, overlap)
    # The tiles form a grid and each one's weights are the outer product of a row ramp and a
    # column ramp shared along its grid row/column, so the sum of the weights is the outer product
    # of two 1-D sums: no full-size weight canvas (issue 27, memory).
    rows_sum, cols_sum = _axis_weight_sums(height, tile, overlap), _axis_weight_sums(width, tile, overlap)
    # One row of tiles in float: rows [top, top + len(band)) of the x4 output.
    band = np.zeros((min(tile, height) * SCALE, width * SCALE, 3), dtype=np.float32)
    top = 0

    def finish(rows: int) -> None:
        """Hand the band's first ``rows`` rows (no later tile reaches them) to the sink."""
        done = band[:rows]
        np.divide(done, rows_sum[top:top + rows, None, None], out=done)
        np.divide(done, cols_sum[None, :, None], out=done)
        sink(top, np.clip(done, 0.0, 1.0, out=done))

    source = torch.from_numpy(rgb).permute(2, 0, 1)
    with tqdm(total=len(boxes), desc="tiles", unit="tile", disable=not progress, leave=False) as bar:
        for batch in _batches(boxes, batch_size):
            tiles = torch.stack([source[:, b.y0 : b.y1, b.x0 : b.x1] for b in batch]).contiguous()
            result = _run_checked(engine, tiles)
            for box, sr_tile in zip(batch, result):
                if box.y0 * SCALE > top:  # a new row of tiles: the rows above it are final
                    rows = box.y0 * SCALE - top
                    finish(rows)
                    band[:-rows] = band[rows:]  # the overlap's partial sums move up (numpy copies safely)
                    band[-rows:] = 0.0
                    top += rows
                weights = blend_weights(box, height, width, overlap)[:, :, None]
                rows_in_band = slice(box.y0 * SCALE - top, box.y1 * SCALE - top)
                cols = slice(box.x0 * SCALE, box.x1 * SCALE)
                band[rows_in_band, cols] += sr_tile.permute(1, 2, 0).numpy() * weights
            bar.update(len(batch))
    finish(len(band))


def _axis_weight_sums(length: int, tile: int, overlap: int) -> np.ndarray:
    """The sum over the tiles along one axis of their 1-D blend weights, x4 pixels."""
    size = min(tile, length)
    total = np.zeros(length * SCALE, dtype=np.float32)
    for start in tile_starts(length, tile, overlap):
        total[start * SCALE:(start + size) * SCALE] += feather_ramp(size * SCALE, overlap * SCALE, start > 0,
                                                                   start + size < length)
    return total


def _run_checked(engine: SREngine, tiles: torch.Tensor) -> torch.Tensor:
    """Run one batch; redo tiles with NaN/Inf in fp32 where the engine can."""
    expected = (tiles.shape[0], 3, tiles.shape[2] * SCALE, tiles.shape[3] * SCALE)
    result = engine.run(tiles)
    if tuple(result.shape) != expected:
        raise F2NError(f"engine {engine.name} returned shape {tuple(result.shape)}, expected {expected}")
    finite = torch.isfinite(result).flatten(1).all(dim=1)
    if bool(finite.all()):
        return result
    result = result.clone()
    bad = (~finite).nonzero().flatten()
    result[bad] = engine.run_fp32(tiles[bad])
    if not bool(torch.isfinite(result).all()):
        raise F2NError(f"engine {engine.name} produced NaN/Inf even in fp32 (input tiles may contain NaN)")
    return result
