"""Image I/O: every input kind users hit (alpha, 16-bit, grayscale, CMYK, EXIF rotation)
and every refusal (missing, non-image, truncated, too large)."""

import os
import stat
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from f2n.errors import ConfigError, InputImageError
from f2n.runtime.images import read_image, write_image


def _gradient(height: int = 24, width: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return np.stack([xx / (width - 1), yy / (height - 1), 1 - xx / (width - 1)], axis=2)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputImageError, match="not found"):
        read_image(tmp_path / "nothing.png")


def test_non_image_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(InputImageError, match="not an image"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_is_refused(tmp_path: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / f"whole{suffix}"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputImageError, match="cannot decode"):
        read_image(cut)


def test_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(InputImageError, match="300x200 = 60000 pixels, limit is 50000"):
        read_image(path, max_pixels=50_000)
    assert read_image(path, max_pixels=60_000).size == (300, 200)


def test_empty_and_zero_size_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InputImageError, match="not an image"):
        read_image(tmp_path / "empty.png")
    Image.new("RGB", (3, 2)).save(tmp_path / "tiny.png")
    data = bytearray((tmp_path / "tiny.png").read_bytes())
    data[16:20] = (0).to_bytes(4, "big")  # IHDR width = 0
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    (tmp_path / "zero.png").write_bytes(bytes(data))
    with pytest.raises(InputImageError):
        read_image(tmp_path / "zero.png")


def test_rgb_png_round_trip_is_exact_to_8_bits(tmp_path: Path) -> None:
    rgb = _gradient()
    write_image(tmp_path / "out.png", rgb)
    decoded = read_image(tmp_path / "out.png")
    assert decoded.bit_depth == 8 and not decoded.was_grayscale and decoded.alpha is None
    assert np.abs(decoded.rgb - rgb).max() <= 0.5 / 255 + 1e-6


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (20, 10), (0, 255, 255, 0)).save(path)  # pure red in CMYK
    decoded = read_image(path)
    assert decoded.rgb.shape == (10, 20, 3)
    red, green, blue = decoded.rgb[5, 10]
    assert red > 0.9 and green < 0.1 and blue < 0.1


def test_16bit_png_keeps_16_bits(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 65536, (12, 10, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), values[..., ::-1])  # OpenCV writes BGR
    decoded = read_image(tmp_path / "deep.png")
    assert decoded.bit_depth == 16
    np.testing.assert_allclose(decoded.rgb * 65535, values, atol=0.02)
    write_image(tmp_path / "again.png", decoded.rgb, bit_depth=16)
    again = read_image(tmp_path / "again.png")
    np.testing.assert_allclose(again.rgb, decoded.rgb, atol=1e-6)


def test_16bit_tiff_and_grayscale_png(tmp_path: Path) -> None:
    values = (np.arange(6 * 7 * 3).reshape(6, 7, 3) * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.tif"), values[..., ::-1])
    decoded = read_image(tmp_path / "deep.tif")
    assert decoded.bit_depth == 16
    np.testing.assert_allclose(decoded.rgb * 65535, values, atol=0.02)
    cv2.imwrite(str(tmp_path / "gray16.png"), values[..., 0])
    gray = read_image(tmp_path / "gray16.png")
    assert gray.bit_depth == 16 and gray.was_grayscale
    np.testing.assert_allclose(gray.rgb[..., 1] * 65535, values[..., 0], atol=0.02)


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    gray = (np.arange(15 * 9).reshape(15, 9) % 256).astype(np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    decoded = read_image(tmp_path / "gray.png")
    assert decoded.was_grayscale and decoded.rgb.shape == (15, 9, 3)
    np.testing.assert_allclose(decoded.rgb[..., 0] * 255, gray, atol=1e-3)
    np.testing.assert_array_equal(decoded.rgb[..., 0], decoded.rgb[..., 2])


@pytest.mark.parametrize(("name", "bit_depth", "with_alpha", "mode"), [
    ("g.png", 8, False, "L"), ("g.jpg", 8, False, "L"), ("ga.png", 8, True, "LA"),
    ("g16.png", 16, False, "I;16"), ("ga16.png", 16, True, "RGBA"),  # OpenCV has no 16-bit gray+alpha
])
def test_grayscale_output_is_one_gray_channel(tmp_path: Path, name: str, bit_depth: int, with_alpha: bool,
                                              mode: str) -> None:
    rgb = _gradient()
    rgb[..., 1] = rgb[..., 0] + 0.1  # unequal channels: the gray written is their mean
    alpha = np.full(rgb.shape[:2], 0.5, np.float32) if with_alpha else None
    write_image(tmp_path / name, rgb, alpha=alpha, bit_depth=bit_depth, grayscale=True)
    decoded = read_image(tmp_path / name)
    with Image.open(tmp_path / name) as written:
        assert written.mode.startswith(mode)
    np.testing.assert_allclose(decoded.rgb[..., 0], np.clip(rgb, 0, 1).mean(axis=2), atol=0.01 if name.endswith(".jpg") else 0.003)


def test_rgba_alpha_is_kept_and_written_back(tmp_path: Path) -> None:
    rgba = np.zeros((8, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = np.arange(6, dtype=np.uint8) * 50
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    decoded = read_image(tmp_path / "alpha.png")
    np.testing.assert_allclose(decoded.alpha * 255, rgba[..., 3], atol=1e-3)
    write_image(tmp_path / "out.png", decoded.rgb, alpha=decoded.alpha)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(written)[..., 3], rgba[..., 3])
    with pytest.raises(ConfigError, match="alpha"):
        write_image(tmp_path / "out.jpg", decoded.rgb, alpha=decoded.alpha)


def test_palette_transparency_and_la_keep_alpha(tmp_path: Path) -> None:
    palette = Image.new("P", (5, 4), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.info["transparency"] = 1
    palette.save(tmp_path / "p.png", transparency=1)
    decoded = read_image(tmp_path / "p.png")
    assert decoded.alpha is not None and decoded.alpha.max() == 0.0
    Image.new("LA", (3, 2), (90, 128)).save(tmp_path / "la.png")
    la = read_image(tmp_path / "la.png")
    assert la.was_grayscale and la.alpha is not None
    np.testing.assert_allclose(la.alpha, 128 / 255, atol=1e-6)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotation_is_applied_and_reset_on_save(tmp_path: Path, orientation: int) -> None:
    stored = (np.arange(4 * 6 * 3).reshape(4, 6, 3) * 3).astype(np.uint8)
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = orientation
    exif[0x010F] = "f2n test camera"
    image.save(tmp_path / "rotated.png", exif=exif.tobytes())  # PNG: lossless pixels
    decoded = read_image(tmp_path / "rotated.png")
    expected = {3: stored[::-1, ::-1], 6: np.rot90(stored, k=-1), 8: np.rot90(stored, k=1)}[orientation]
    np.testing.assert_allclose(decoded.rgb * 255, expected, atol=1e-3)
    write_image(tmp_path / "out.jpg", decoded.rgb, exif=decoded.exif)
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.getexif()[0x0112] == 1
        assert written.getexif()[0x010F] == "f2n test camera"


def test_exif_is_parsed_once_per_photo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = Image.fromarray(np.zeros((4, 6, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    parses = []
    original_load = Image.Exif.load
    monkeypatch.setattr(Image.Exif, "load", lambda self, data: parses.append(data) or original_load(self, data))
    decoded = read_image(tmp_path / "rotated.jpg")
    write_image(tmp_path / "out.jpg", decoded.rgb, exif=decoded.exif)  # read, then written back: one parse
    assert len(parses) == 1 and decoded.size == (4, 6)


def test_icc_profile_is_kept_in_8_and_16_bit(tmp_path: Path) -> None:
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for bit_depth in (8, 16):
        path = tmp_path / f"icc{bit_depth}.png"
        write_image(path, _gradient(), bit_depth=bit_depth, icc_profile=profile)
        decoded = read_image(path)
        assert decoded.icc_profile == profile and decoded.bit_depth == bit_depth


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        write_image(tmp_path / "out.png", _gradient())
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.png").stat().st_mode) == 0o644  # was 0600 (the temp file's mode)


def test_write_leaves_no_partial_file_on_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="16"):
        write_image(tmp_path / "x.jpg", _gradient(), bit_depth=16)
    with pytest.raises(ConfigError, match=r"\(H, W, 3\)"):
        write_image(tmp_path / "x.png", np.zeros((4, 4)))
    assert list(tmp_path.iterdir()) == []


def test_real_photos_decode(shared_data: Path) -> None:
    decoded = read_image(shared_data / "real_lq" / "000013p.png")
    assert decoded.size == (265, 315) and decoded.rgb.dtype == np.float32
    assert 0.0 <= decoded.rgb.min() and decoded.rgb.max() <= 1.0


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_conversion_to_integers_band_by_band_equals_the_whole_image_formula(bit_depth: int) -> None:
    from f2n.runtime.images import UINT_BAND_ROWS, _to_uint

    pixels = np.random.default_rng(0).random((2 * UINT_BAND_ROWS + 5, 7, 3), dtype=np.float32) * 1.4 - 0.2
    top, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    np.testing.assert_array_equal(_to_uint(pixels, bit_depth), np.round(np.clip(pixels, 0, 1) * top).astype(dtype))
