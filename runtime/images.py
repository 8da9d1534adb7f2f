"""Image decoding and encoding for the runtime.

Every photo enters as float32 RGB in [0, 1] with its alpha, bit depth, colour profile
and EXIF kept beside it, so that the output can be written back in the same form.
Pillow does the decoding; 16-bit colour images go through OpenCV because Pillow
reduces them to 8 bits. A multi-frame file (animated GIF/APNG/WebP, multipage TIFF) is
read as its first frame, with a warning; an ICC profile whose colour space is not the
output's (a CMYK profile of a CMYK JPEG written as RGB) is dropped, with a warning.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from f2n.errors import ConfigError, InputImageError
from f2n.fileio import write_bytes_atomic

DEFAULT_MAX_PIXELS = 64_000_000
_EXIF_ORIENTATION = 0x0112
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N"}
_PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF",
                   ".webp": "WEBP", ".bmp": "BMP"}
_ALPHA_FORMATS = {"PNG", "TIFF", "WEBP"}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder`` (by suffix), sorted: a stable order keeps
    seeds and outputs reproducible. Callers decide what an empty folder means."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

@dataclass(frozen=True)
class DecodedImage:
    """A decoded photo. ``rgb`` is (H, W, 3) float32 in [0, 1] with EXIF orientation applied;
    ``alpha`` is (H, W) float32 in [0, 1] or None. ``exif`` has its orientation reset to 1."""

    rgb: np.ndarray = field(repr=False)
    alpha: np.ndarray | None = field(repr=False)
    bit_depth: int
    was_grayscale: bool
    icc_profile: bytes | None = field(default=None, repr=False)
    exif: bytes | None = field(default=None, repr=False)
    warnings: tuple[str, ...] = ()  # what the output will not carry over (frames, a mismatched ICC profile)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


@dataclass(frozen=True)
class PixelCanvas:
    """An output photo as the encoder takes it: ``pixels`` (H, W, 1) gray or (H, W, 3) RGB, uint8 or
    uint16 (``bit_depth``), filled band by band from float RGB (:meth:`store`). The tiles write
    into it, so the x4 output never exists whole in float (issue 27: 576 MB on a 3 MP photo)."""

    pixels: np.ndarray = field(repr=False)
    bit_depth: int
    grayscale: bool

    @classmethod
    def empty(cls, height: int, width: int, *, bit_depth: int = 8, grayscale: bool = False) -> PixelCanvas:
        if bit_depth not in (8, 16):
            raise ConfigError(f"canvas bit depth must be 8 or 16, got {bit_depth}")
        pixels = np.empty((height, width, 1 if grayscale else 3), dtype=_UINT[bit_depth])
        return cls(pixels, bit_depth, grayscale)

    def store(self, row: int, rgb: np.ndarray) -> None:
        """Rows ``row`` onwards from float RGB (rows, W, 3): clipped, grayed and rounded exactly as
        ``write_image`` converts a float photo."""
        color = _gray(rgb) if self.grayscale else rgb
        _to_uint(color, self.bit_depth, out=self.pixels[row:row + len(rgb)])


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``path``; refuse missing, non-image, truncated, empty or oversized files."""
    path = Path(path)
    if not path.is_file():
        raise InputImageError(f"input image not found: {path}")
    try:
        with Image.open(path) as image:
            _check_size(path, image.size, max_pixels)  # header only: nothing decoded yet
            is_16bit_color = _is_16bit_color(image)  # before getexif(), which may decode a PNG
            is_16bit_gray_alpha = _is_16bit_gray_alpha(image)
            frames = getattr(image, "n_frames", 1)
            orientation, exif = _orientation_and_upright_exif(image)
            icc_profile = image.info.get("icc_profile") or None
            if is_16bit_color:
                pixels, alpha, was_gray = _decode_16bit_color(path)
                was_gray = was_gray or is_16bit_gray_alpha  # OpenCV hands 16-bit gray+alpha over as BGRA
                bit_depth = 16
            else:
                image.load()
                pixels, alpha, was_gray, bit_depth = _pillow_to_arrays(path, image)
    except UnidentifiedImageError:
        raise InputImageError(f"not an image file: {path} (expected PNG, JPEG, TIFF, WebP or BMP)") from None
    except Image.DecompressionBombError as error:
        raise InputImageError(f"image too large: {path} ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise InputImageError(f"cannot decode {path}: {error} (truncated or corrupt file?)") from None
    warnings = []
    if frames > 1:
        warnings.append(f"{path.name} has {frames} frames (animation or pages): only the first is used")
    icc_space = _icc_colour_space(icc_profile)
    if icc_profile is not None and icc_space != ("GRAY" if was_gray else "RGB"):
        warnings.append(f"ICC profile dropped: it describes {icc_space or 'an unknown colour space'}, "
                        f"the output is {'gray' if was_gray else 'RGB'}")
        icc_profile = None
    rgb = _apply_orientation(pixels, orientation)
    alpha = None if alpha is None else _apply_orientation(alpha, orientation)
    return DecodedImage(np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha),
                        bit_depth, was_gray, icc_profile, exif, tuple(warnings))


def write_image(path: str | os.PathLike, rgb: np.ndarray | PixelCanvas, *, alpha: np.ndarray | None = None,
                bit_depth: int = 8, icc_profile: bytes | None = None, exif: bytes | None = None,
                grayscale: bool = False) -> None:
    """Encode float RGB in [0, 1], or a :class:`PixelCanvas` already in the output's form, to
    ``path`` atomically (temp file in the same folder, then rename).

    ``alpha`` makes an RGBA file; ``bit_depth=16`` needs PNG; ``grayscale`` writes the mean of
    the channels as one gray channel (a gray photo comes back gray). ICC profile and EXIF are written
    as given: ``exif`` must describe upright pixels, as ``DecodedImage.exif`` does (its
    orientation is reset when the photo is read, so the EXIF is parsed once per photo).
    """
    path = Path(path)
    fmt = _output_format(path, has_alpha=alpha is not None)
    if isinstance(rgb, PixelCanvas):
        if (rgb.bit_depth, rgb.grayscale) != (bit_depth, grayscale):
            raise ConfigError(f"canvas of {rgb.bit_depth} bits{' gray' if rgb.grayscale else ''} written as "
                              f"{bit_depth} bits{' gray' if grayscale else ''}")
        pixels = rgb.pixels
    elif rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ConfigError(f"output image must be (H, W, 3), got shape {tuple(rgb.shape)}")
    else:
        pixels = _gray(rgb) if grayscale else rgb
    if alpha is not None and alpha.shape != pixels.shape[:2]:
        raise ConfigError(f"alpha shape {tuple(alpha.shape)} does not match image {tuple(pixels.shape[:2])}")
    if bit_depth not in (8, 16) or (bit_depth == 16 and fmt != "PNG"):
        raise ConfigError(f"bit depth {bit_depth} with {path.suffix!r}: expected 8, or 16 with .png")
    if not path.parent.is_dir():
        raise ConfigError(f"output folder does not exist: {path.parent}")
    data = (_encode_png16(pixels, alpha, icc_profile, exif) if bit_depth == 16
            else _encode_pillow(pixels, alpha, fmt, icc_profile, exif))
    try:
        write_bytes_atomic(path, data)
    except OSError as error:  # read-only folder, full disk: one line, not a traceback
        raise ConfigError(f"cannot write {path}: {error.strerror or error}") from None


def upscale_alpha(alpha: np.ndarray, scale: int = 4) -> np.ndarray:
    """An alpha channel (H, W) float32 enlarged ``scale`` x bicubically, in [0, 1]: the SR
    network sees RGB only."""
    height, width = alpha.shape
    return np.clip(cv2.resize(alpha, (width * scale, height * scale), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)


def output_bit_depth(path: str | os.PathLike, bit_depth: int, has_alpha: bool) -> int:
    """The bit depth to write a photo decoded at ``bit_depth`` to ``path``: 16 bits only where the
    format holds them (PNG), else 8. The same ConfigErrors as ``write_image`` for the format,
    so a caller can check before the photo is processed rather than when it is written."""
    return bit_depth if _output_format(Path(path), has_alpha) == "PNG" else 8


def _output_format(path: Path, has_alpha: bool) -> str:
    fmt = _PILLOW_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(f"unsupported output extension {path.suffix!r}; expected one of {sorted(_PILLOW_FORMATS)}")
    if has_alpha and fmt not in _ALPHA_FORMATS:
        raise ConfigError(f"an image with alpha needs a PNG, TIFF or WebP output, got {path.suffix!r}")
    return fmt


def _check_size(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise InputImageError(f"image has zero size: {path} is {width}x{height}")
    if width * height > max_pixels:
        raise InputImageError(f"image too large: {path} is {width}x{height} = {width * height} pixels, "
                              f"limit is {max_pixels} (raise it with max_pixels)")


def _is_16bit_color(image: Image.Image) -> bool:
    """Pillow opens 16-bit RGB(A) PNG/TIFF as 8-bit modes; the raw mode of its tiles tells."""
    if image.mode in _GRAY_MODES:
        return False
    return any(";16" in str(tile.args) for tile in image.tile)


def _is_16bit_gray_alpha(image: Image.Image) -> bool:
    """Pillow opens a 16-bit gray+alpha PNG as RGBA; its tiles' raw mode (``LA;16B``) tells."""
    return any(str(tile.args).startswith("LA;16") for tile in image.tile)


def _icc_colour_space(profile: bytes | None) -> str:
    """The data colour space of an ICC profile ('RGB', 'GRAY', 'CMYK', ...; header bytes 16-19)."""
    return profile[16:20].decode("ascii", "replace").strip() if profile is not None and len(profile) >= 20 else ""


def _decode_16bit_color(path: Path) -> tuple[np.ndarray, np.ndarray | None, bool]:
    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16:
        raise InputImageError(f"cannot decode 16-bit image {path} (OpenCV returned {None if array is None else array.dtype})")
    array = array.astype(np.float32) / 65535.0
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2), None, True
    rgb = array[..., 2::-1]  # BGR(A) -> RGB
    alpha = array[..., 3] if array.shape[2] == 4 else None
    return rgb, alpha, False


def _pillow_to_arrays(path: Path, image: Image.Image) -> tuple[np.ndarray, np.ndarray | None, bool, int]:
    """(rgb, alpha, was_grayscale, bit_depth) from any Pillow mode."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray = np.asarray(image, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=2), None, True, 16
    if mode in ("1", "L", "LA", "La"):
        array = np.asarray(image.convert("LA"), dtype=np.float32) / 255.0
        alpha = array[..., 1] if mode in ("LA", "La") else None
        return np.repeat(array[..., :1], 3, axis=2), alpha, True, 8
    if mode == "P" and "transparency" not in image.info:
        image = image.convert("RGB")
    elif mode in ("P", "PA", "RGBa", "RGBX"):
        image = image.convert("RGBA")
    elif mode not in ("RGB", "RGBA"):
        try:
            image = image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
        except ValueError:
            raise InputImageError(f"unsupported pixel mode {mode!r} in {path}; expected RGB, RGBA, grayscale, palette or CMYK") from None
    array = np.asarray(image, dtype=np.float32) / 255.0
    alpha = array[..., 3] if image.mode == "RGBA" else None
    return array[..., :3], alpha, False, 8


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """The EXIF orientation as numpy operations (same table as PIL.ImageOps.exif_transpose)."""
    swap = (1, 0) + tuple(range(2, array.ndim))
    if orientation == 2:
        return array[:, ::-1]
    if orientation == 3:
        return array[::-1, ::-1]
    if orientation == 4:
        return array[::-1]
    if orientation == 5:
        return array.transpose(swap)
    if orientation == 6:
        return np.rot90(array, k=-1)
    if orientation == 7:
        return array.transpose(swap)[::-1, ::-1]
    if orientation == 8:
        return np.rot90(array, k=1)
    return array


def _orientation_and_upright_exif(image: Image.Image) -> tuple[int, bytes | None]:
    """The EXIF orientation, and the EXIF to write back with it reset to 1 (the decoded
    pixels are turned upright), from one parse of the EXIF."""
    exif = image.getexif()
    orientation = int(exif.get(_EXIF_ORIENTATION, 1))
    if len(exif) == 0:
        return orientation, None
    if _EXIF_ORIENTATION in exif:
        exif[_EXIF_ORIENTATION] = 1
    return orientation, exif.tobytes()


UINT_BAND_ROWS = 64  # rows converted at a time: float temporaries stay a band's size, not the image's
_UINT = {8: np.uint8, 16: np.uint16}


def _gray(rgb: np.ndarray) -> np.ndarray:
    """One gray channel (H, W, 1): the mean of the clipped channels."""
    return np.clip(rgb, 0.0, 1.0).mean(axis=2, keepdims=True)


def _to_uint(array: np.ndarray, bit_depth: int, out: np.ndarray | None = None) -> np.ndarray:
    """round(clip(array, 0, 1) * top) as uint8/uint16 (into ``out`` if given), band by band: on a
    48 MP x4 output the whole-image version made three float copies (1.7 GB) (issue 27)."""
    top = 65535 if bit_depth == 16 else 255
    result = np.empty(array.shape, dtype=_UINT[bit_depth]) if out is None else out
    for start in range(0, array.shape[0], UINT_BAND_ROWS):
        band = np.clip(array[start:start + UINT_BAND_ROWS], 0.0, 1.0)
        band *= top
        np.round(band, out=band)
        result[start:start + UINT_BAND_ROWS] = band
    return result


def _as_uint(array: np.ndarray, bit_depth: int) -> np.ndarray:
    """``array`` as ``bit_depth`` integers: a canvas's pixels as they are, float converted."""
    return array if array.dtype == _UINT[bit_depth] else _to_uint(array, bit_depth)


def _encode_pillow(color: np.ndarray, alpha: np.ndarray | None, fmt: str, icc_profile: bytes | None,
                   exif: bytes | None) -> bytes:
    """``color``: (H, W, 3) RGB or (H, W, 1) gray, float in [0, 1] or uint8."""
    gray = color.shape[2] == 1
    pixels = _as_uint(color, 8) if alpha is None else np.dstack([_as_uint(color, 8), _to_uint(alpha, 8)])
    mode = ("L" if gray else "RGB") if alpha is None else ("LA" if gray else "RGBA")
    image = Image.fromarray(pixels.squeeze(axis=2) if mode == "L" else pixels, mode=mode)
    options: dict[str, object] = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    if icc_profile and fmt != "BMP":
        options["icc_profile"] = icc_profile
    if exif and fmt != "BMP":
        options["exif"] = exif
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _encode_png16(color: np.ndarray, alpha: np.ndarray | None, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    """16-bit PNG through OpenCV, with iCCP / eXIf chunks added after IHDR (OpenCV writes neither).
    ``color``: (H, W, 3) RGB or (H, W, 1) gray, float in [0, 1] or uint16. OpenCV has no gray+alpha:
    that one is encoded here."""
    if color.shape[2] == 1 and alpha is not None:
        data = _encode_png16_gray_alpha(color[..., 0], alpha)
    else:
        bgr = _as_uint(color[..., ::-1], 16)  # float: converted in BGR order; a canvas: a view, copied once below
        pixels = np.ascontiguousarray(bgr) if alpha is None else np.dstack([bgr, _to_uint(alpha, 16)])
        ok, encoded = cv2.imencode(".png", pixels)
        if not ok:
            raise ConfigError(f"OpenCV could not encode a 16-bit PNG of shape {tuple(pixels.shape)}")
        data = encoded.tobytes()
    chunks = []
    if icc_profile:
        chunks.append(_png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, IHDR length+type, IHDR data, CRC
    return data[:end_of_ihdr] + b"".join(chunks) + data[end_of_ihdr:]


def _encode_png16_gray_alpha(gray: np.ndarray, alpha: np.ndarray) -> bytes:
    """A 16-bit gray+alpha PNG (colour type 4): big-endian samples, filter 0 on every row."""
    height, width = gray.shape
    samples = np.stack([_as_uint(gray, 16), _to_uint(alpha, 16)], axis=-1).astype(">u2").reshape(height, -1)
    rows = np.concatenate([np.zeros((height, 1), np.uint8), samples.view(np.uint8)], axis=1)
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 4, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
            + _png_chunk(b"IEND", b""))


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")
