"""Reading and writing images for restoration, without losing or corrupting anything.

- Formats: PNG, JPEG, BMP, TIFF, WebP (any other still image Pillow reads is accepted too and
  written as PNG).
- Pixels are kept as ``H×W×C`` arrays, ``uint8`` or ``uint16`` (16-bit stays 16-bit), with
  ``C`` = 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA). Palette, CMYK, 1-bit and the other
  Pillow modes are converted to one of these.
- EXIF orientation is applied to the pixels (and reset to "normal" in the EXIF written back);
  the ICC profile is carried through.
- A file that cannot be used raises :class:`ImageReadError` with a one-line reason.
- Writes are atomic: encoded in memory, written to a temporary file in the target folder and
  renamed into place, so an interrupted run never leaves a partial file.
"""
from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_write_bytes  # noqa: F401 - re-exported: imageio's writes go through it
from ..defaults import DEFAULT_MAX_PIXELS
from ..errors import MambaIRv2Error

PathLike = Union[str, os.PathLike]

#: File extension (lower case, with the dot) → Pillow format name, for the formats we write.
EXTENSIONS: Dict[str, str] = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP",
                              ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
#: Format name → canonical extension.
FORMAT_EXTENSION: Dict[str, str] = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif",
                                    "WEBP": ".webp"}
WRITABLE_FORMATS = tuple(FORMAT_EXTENSION)
#: Extensions a folder scan takes: the writable formats and other still images Pillow reads
#: (those are written as PNG). Files without an extension are taken when their header says image.
READ_EXTENSIONS = frozenset(EXTENSIONS) | {".gif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga"}
_SNIFF_BYTES = 64
_ORIENTATION_TAG = 0x0112


class ImageReadError(MambaIRv2Error, ValueError):
    """A file that cannot be read as an image; the message is one line saying why."""


class ImageWriteError(MambaIRv2Error, ValueError):
    """An image that cannot be encoded in the requested format (message: one line)."""


@dataclass
class ImageData:
    """Pixels and the metadata worth carrying to the restored file.

    Attributes:
        pixels: ``H×W×C`` ``uint8`` or ``uint16``; C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA.
        format: Pillow format name of the source (``PNG``, ``JPEG``, ``BMP``, ``TIFF``, ``WEBP``…).
        icc_profile: the embedded colour profile (RGB or gray), if any.
        exif: EXIF bytes with the orientation already applied (tag reset to 1), if any.
    """

    pixels: np.ndarray
    format: str = "PNG"
    icc_profile: Optional[bytes] = None
    exif: Optional[bytes] = None

    @property
    def bit_depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def channels(self) -> int:
        return int(self.pixels.shape[2])

    @property
    def size(self) -> Tuple[int, int]:
        """``(width, height)``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])


def format_for_name(name: str) -> Optional[str]:
    """The writable format a file name or format word (``png``, ``.JPG``, ``tiff``…) stands for."""
    key = name.lower()
    if not key.startswith("."):
        key = "." + key
    return EXTENSIONS.get(key)


# -- reading -------------------------------------------------------------------------------------
def read_image(path: PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Reads an image file into :class:`ImageData`.

    Raises:
        ImageReadError: missing, empty, not an image, truncated or corrupt, animated, absurd
            dimensions, or an unsupported pixel type. The message names the reason only (the
            caller knows the file).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageReadError("no such file") from None
    except OSError as exc:
        raise ImageReadError(f"cannot access ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ImageReadError("is a folder")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device: reading it could block or never end
        raise ImageReadError("not a regular file (a pipe, socket or device)")
    if st.st_size == 0:
        raise ImageReadError("empty file")
    try:
        _identify(path)  # reads the header only: a huge file that is no image is not read whole
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageReadError(f"cannot read ({exc.strerror or exc})") from None
    return decode_image(data, max_pixels=max_pixels)


def _identify(path: Path) -> None:
    """Raises :class:`ImageReadError` unless the file starts like an image that Pillow can
    open (only its header is read)."""
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            head = f.read(_SNIFF_BYTES)
            f.seek(0)
            Image.open(f)
    except UnidentifiedImageError:
        kind = sniff_format(head)
        if kind:
            raise ImageReadError(f"truncated or corrupt {kind} (its header cannot be decoded)") from None
        raise ImageReadError("not an image (unrecognised or unsupported format)") from None
    except Exception:  # noqa: BLE001 - bombs, broken headers: decode_image says which
        pass


def is_image_file(path: PathLike) -> bool:
    """Whether a folder scan takes ``path``: a known image extension (:data:`READ_EXTENSIONS`),
    or no extension and a header that announces an image. Never raises."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix:
        return suffix in READ_EXTENSIONS
    try:
        with open(path, "rb") as f:
            return sniff_format(f.read(_SNIFF_BYTES)) is not None
    except OSError:
        return False


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageData:
    """Decodes encoded image bytes; see :func:`read_image`."""
    if not data:
        raise ImageReadError("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        kind = sniff_format(data)
        if kind:
            raise ImageReadError(f"truncated or corrupt {kind} (its header cannot be decoded)") from None
        raise ImageReadError("not an image (unrecognised or unsupported format)") from None
    except Image.DecompressionBombError as exc:
        found = re.search(r"\((\d+) pixels\)", str(exc))
        what = f"{int(found.group(1)):,} pixels" if found else _short(exc)
        raise ImageReadError(f"too large ({what}, limit {max_pixels:,} pixels)") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken headers
        kind = sniff_format(data) or "image"
        raise ImageReadError(f"truncated or corrupt {kind} header ({_short(exc)})") from None
    with img:
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageReadError(f"absurd dimensions {width}×{height}")
        if width * height > max_pixels:
            raise ImageReadError(f"too large: {width}×{height} "
                                 f"({width * height:,} pixels, limit {max_pixels:,})")
        if getattr(img, "n_frames", 1) > 1:
            raise ImageReadError(f"has {img.n_frames} frames; animated or multi-page images are not supported")
        fmt = img.format or "PNG"
        icc = img.info.get("icc_profile") or None
        # the pixels first: reading a PNG's EXIF may load the image, and a failure there is
        # swallowed (broken EXIF is not fatal), which would leave a corrupt file decoded as black
        if _is_16bit_colour(img, data):
            try:  # Pillow decodes these (to 8 bits) reliably: it catches truncation for us
                img.load()
            except Exception as exc:  # noqa: BLE001
                raise ImageReadError(f"truncated or corrupt {fmt} data ({_short(exc)})") from None
            pixels = _decode_with_opencv(data, gray_alpha=_samples(img, data) == 2)
        else:
            pixels, keep_icc = _pixels_from_pillow(img, fmt)
            if not keep_icc:
                icc = None
        exif, orientation = exif_orientation(img)
    pixels = apply_orientation(pixels, orientation)
    exif_bytes = None
    if exif is not None and len(exif):
        try:
            if _ORIENTATION_TAG in exif:
                exif[_ORIENTATION_TAG] = 1
            exif_bytes = exif.tobytes()
        except Exception:  # noqa: BLE001 - unserialisable EXIF is dropped, never fatal
            exif_bytes = None
    return ImageData(np.ascontiguousarray(pixels), fmt, icc, exif_bytes)


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"),
          (b"MM\x00*", "TIFF"), (b"GIF8", "GIF"), (b"BM", "BMP"))


def sniff_format(data: bytes) -> Optional[str]:
    """The image format announced by the first bytes of a file, if any."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if len(data) >= 3 and data[:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        return "PPM"
    return None


def _samples(img: Image.Image, data: bytes) -> int:
    """Channels per pixel stored in a PNG or TIFF file (1 if unknown)."""
    if img.format == "PNG" and len(data) >= 26 and data[12:16] == b"IHDR":
        return {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(data[25], 1)
    if img.format == "TIFF":
        return int(getattr(img, "tag_v2", {}).get(277, 1))
    return 1


def _is_16bit_colour(img: Image.Image, data: bytes) -> bool:
    """16-bit images with more than one channel, which Pillow would reduce to 8 bits."""
    if img.format == "PNG" and len(data) >= 26 and data[12:16] == b"IHDR":
        return data[24] == 16 and _samples(img, data) >= 2
    if img.format == "TIFF":
        bits = getattr(img, "tag_v2", {}).get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return 16 in bits and _samples(img, data) >= 2
    return False


def _decode_with_opencv(data: bytes, gray_alpha: bool) -> np.ndarray:
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # no libpng/libtiff chatter
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    finally:
        cv2.utils.logging.setLogLevel(level)
    if arr is None:
        raise ImageReadError("truncated or corrupt image data (OpenCV cannot decode it)")
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"unsupported pixel type: {arr.dtype} samples")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    elif arr.shape[2] == 4:
        arr = arr[:, :, [2, 1, 0, 3]]
        if gray_alpha:
            arr = arr[:, :, [0, 3]]
    return np.ascontiguousarray(arr)


def _pixels_from_pillow(img: Image.Image, fmt: str) -> Tuple[np.ndarray, bool]:
    """Decodes a Pillow image into ``H×W×C`` uint8/uint16; also says whether the ICC profile
    still describes the pixels (not after a CMYK/Lab/HSV → RGB conversion)."""
    try:
        img.load()
    except Exception as exc:  # noqa: BLE001 - OSError "image file is truncated", SyntaxError…
        raise ImageReadError(f"truncated or corrupt {fmt} data ({_short(exc)})") from None
    try:
        return pil_to_array(img)
    except ValueError as exc:
        raise ImageReadError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a decoder failing late is still a corrupt file
        raise ImageReadError(f"truncated or corrupt {fmt} data ({_short(exc)})") from None


def pil_to_array(img: Image.Image) -> Tuple[np.ndarray, bool]:
    """``H×W×C`` uint8/uint16 pixels of a Pillow image in any mode, and whether an ICC profile
    of the image still applies to them.

    Raises:
        ValueError: a pixel type with no lossless 8/16-bit equivalent (32-bit float or large ints).
    """
    mode = img.mode
    keep_icc = True
    transparent = "transparency" in img.info
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        arr = np.asarray(img).astype(np.uint16)
    elif mode == "I":
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ValueError("unsupported pixel type: 32-bit integer samples outside 0..65535")
        arr = arr.astype(np.uint16)
    elif mode == "F":
        raise ValueError("unsupported pixel type: 32-bit floating-point samples")
    elif mode in ("L", "LA", "RGB", "RGBA") and not (transparent and mode in ("L", "RGB")):
        arr = np.asarray(img)
    elif mode in ("1", "L"):
        arr = np.asarray(img.convert("LA" if transparent else "L"))
    elif mode == "La":
        arr = np.asarray(img.convert("LA"))
    elif mode in ("P", "PA", "RGB", "RGBa", "RGBX"):
        has_alpha = mode in ("PA", "RGBa") or transparent
        arr = np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    else:  # CMYK, YCbCr, LAB, HSV: converted to RGB; their profile no longer applies
        keep_icc = mode == "YCbCr"
        arr = np.asarray(img.convert("RGB"))
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.ascontiguousarray(arr), keep_icc


def exif_orientation(img: Image.Image) -> Tuple[Optional["Image.Exif"], int]:
    """The EXIF of a Pillow image (None if unreadable) and its orientation 1..8 (1 if none)."""
    try:
        exif = img.getexif()
    except Exception:  # noqa: BLE001 - broken EXIF must not make a readable image fail
        return None, 1
    try:
        orientation = int(exif.get(_ORIENTATION_TAG, 1) or 1)
    except (TypeError, ValueError):
        orientation = 1
    return exif, orientation if 1 <= orientation <= 8 else 1


def apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Pixels of an ``H×W×C`` array as displayed under EXIF orientation 1..8."""
    if orientation == 2:
        return pixels[:, ::-1]
    if orientation == 3:
        return pixels[::-1, ::-1]
    if orientation == 4:
        return pixels[::-1]
    if orientation == 5:
        return pixels.transpose(1, 0, 2)
    if orientation == 6:
        return np.rot90(pixels, -1)
    if orientation == 7:
        return pixels[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return np.rot90(pixels, 1)
    return pixels


def array_to_pil(pixels: np.ndarray) -> Image.Image:
    """A Pillow image of ``H×W×C`` pixels (uint8 any C; uint16 gray only, as ``I;16``)."""
    c = pixels.shape[2]
    if pixels.dtype == np.uint16:
        if c != 1:
            raise ValueError("Pillow cannot hold 16-bit images with more than one channel")
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]))
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    arr = pixels[:, :, 0] if c == 1 else pixels
    return Image.fromarray(np.ascontiguousarray(arr), mode)


def full_scale(pixels: np.ndarray) -> float:
    """The value of full intensity for the pixels' type: 65535.0 for 16-bit, 255.0 for 8-bit
    (pixels / full_scale(pixels) is the [0, 1] image the models take)."""
    return 65535.0 if pixels.dtype == np.uint16 else 255.0


# -- writing -------------------------------------------------------------------------------------
def to_8bit(pixels: np.ndarray) -> np.ndarray:
    """uint16 → uint8 with rounding (uint8 passes through)."""
    if pixels.dtype == np.uint8:
        return pixels
    return ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def encode_image(image: ImageData, fmt: Optional[str] = None, quality: int = 95) -> bytes:
    """Encodes ``image`` as ``fmt`` (default: its own format, PNG if that one is not writable).

    Deterministic: the same pixels and metadata always give the same bytes (no timestamps).
    16-bit pixels stay 16-bit in PNG and TIFF; JPEG, WebP and BMP hold 8 bits. Formats without
    alpha (JPEG) drop it; WebP has no gray mode, so gray is stored as RGB. ``quality`` applies
    to JPEG and WebP (100 makes WebP lossless).
    """
    fmt = (fmt or image.format or "PNG").upper()
    if fmt == "JPG":
        fmt = "JPEG"
    if fmt not in WRITABLE_FORMATS:
        fmt = "PNG"
    px = image.pixels
    if px.ndim != 3 or px.shape[2] not in (1, 2, 3, 4) or px.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(f"cannot encode pixels of shape {px.shape} and type {px.dtype}")
    if px.shape[0] < 1 or px.shape[1] < 1:
        raise ImageWriteError("cannot encode an empty image")
    c = px.shape[2]
    buf = io.BytesIO()
    icc, exif = image.icc_profile, image.exif
    if fmt == "PNG":
        if px.dtype == np.uint16 and c > 1:
            return _encode_png16(px, icc)
        params = dict(compress_level=6)
        if icc:
            params["icc_profile"] = icc
        if exif:
            params["exif"] = exif
        array_to_pil(px).save(buf, "PNG", **params)
    elif fmt == "TIFF":
        if px.dtype == np.uint16 and c > 1:
            return _encode_opencv(px, ".tiff")
        params = dict(compression="tiff_lzw")
        if icc:
            params["icc_profile"] = icc
        array_to_pil(px).save(buf, "TIFF", **params)
    elif fmt == "BMP":
        px = to_8bit(px)
        if c in (2, 4):  # Pillow writes BMP without alpha; OpenCV keeps it (32-bit BGRA)
            return _encode_opencv(px if c == 4 else px[:, :, [0, 0, 0, 1]], ".bmp")
        array_to_pil(px).save(buf, "BMP")
    elif fmt == "JPEG":
        px = to_8bit(px)[:, :, :1] if c <= 2 else to_8bit(px)[:, :, :3]
        params = dict(quality=int(quality), subsampling=0, optimize=False)
        if icc:
            params["icc_profile"] = icc
        if exif:
            params["exif"] = exif
        array_to_pil(px).save(buf, "JPEG", **params)
    else:  # WEBP
        px = to_8bit(px)
        if c == 1:
            px = px[:, :, [0, 0, 0]]
        elif c == 2:
            px = px[:, :, [0, 0, 0, 1]]
        params = dict(lossless=True, quality=100, method=4, exact=True) if quality >= 100 else \
            dict(quality=int(quality), method=4)
        if icc:
            params["icc_profile"] = icc
        if exif:
            params["exif"] = exif
        array_to_pil(px).save(buf, "WEBP", **params)
    return buf.getvalue()


def _encode_opencv(pixels: np.ndarray, ext: str) -> bytes:
    import cv2

    c = pixels.shape[2]
    if c == 2:
        pixels = pixels[:, :, [0, 0, 0, 1]]
    elif c == 3:
        pixels = pixels[:, :, ::-1]
    elif c == 4:
        pixels = pixels[:, :, [2, 1, 0, 3]]
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(pixels))
    finally:
        cv2.utils.logging.setLogLevel(level)
    if not ok:
        raise ImageWriteError(f"OpenCV could not encode a {pixels.dtype} image as {ext}")
    return buf.tobytes()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _encode_png16(pixels: np.ndarray, icc: Optional[bytes] = None) -> bytes:
    """A 16-bit PNG of any channel count (Pillow cannot write 16-bit colour), with the ICC profile."""
    h, w, c = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(pixels.astype(">u2")).view(np.uint8).reshape(h, w * c * 2)
    bpp = 2 * c
    filtered = rows.copy()
    filtered[:, bpp:] = rows[:, bpp:] - rows[:, :-bpp]  # "Sub" filter, modulo 256 like the spec
    raw = np.concatenate([np.ones((h, 1), np.uint8), filtered], axis=1).tobytes()
    out = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))]
    if icc:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc, 6)))
    out.append(_png_chunk(b"IDAT", zlib.compress(raw, 6)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def write_image(path: PathLike, image: ImageData, fmt: Optional[str] = None, quality: int = 95,
                overwrite: bool = False) -> Path:
    """Encodes ``image`` (see :func:`encode_image`) and writes it atomically to ``path``."""
    return atomic_write_bytes(path, encode_image(image, fmt, quality), overwrite=overwrite)


def with_pixels(image: ImageData, pixels: np.ndarray) -> ImageData:
    """A copy of ``image`` holding other pixels (same format and metadata)."""
    return replace(image, pixels=pixels)


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

