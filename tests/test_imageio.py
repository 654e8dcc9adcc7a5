"""Reading and writing images: formats, bit depths, modes, orientation, bad files, atomic writes."""
from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from mambairv2.utils import imageio
from mambairv2.utils.imageio import (
    ImageData,
    ImageReadError,
    atomic_write_bytes,
    decode_image,
    encode_image,
    read_image,
    write_image,
)

RNG = np.random.default_rng(0)


def _pixels(c: int, dtype=np.uint8, h: int = 7, w: int = 9) -> np.ndarray:
    top = 65536 if dtype == np.uint16 else 256
    return RNG.integers(0, top, (h, w, c)).astype(dtype)


LOSSLESS = [(fmt, c, dt) for fmt, cs, dts in [
    ("PNG", (1, 2, 3, 4), (np.uint8, np.uint16)),
    ("TIFF", (1, 2, 3, 4), (np.uint8,)),
    ("TIFF", (1, 3, 4), (np.uint16,)),
    ("BMP", (1, 3, 4), (np.uint8,)),
] for c in cs for dt in dts]


@pytest.mark.parametrize("fmt,c,dtype", LOSSLESS, ids=lambda v: getattr(v, "__name__", str(v)))
def test_lossless_roundtrip_keeps_pixels_depth_and_channels(tmp_path, fmt, c, dtype):
    px = _pixels(c, dtype)
    path = write_image(tmp_path / f"a{imageio.FORMAT_EXTENSION[fmt]}", ImageData(px, fmt))
    back = read_image(path)
    assert back.format == fmt
    assert back.pixels.dtype == dtype
    np.testing.assert_array_equal(back.pixels, px)


@pytest.mark.parametrize("c", [3, 4])
def test_webp_lossless_at_quality_100(c):
    px = _pixels(c)
    back = decode_image(encode_image(ImageData(px, "WEBP"), quality=100))
    assert back.format == "WEBP"
    np.testing.assert_array_equal(back.pixels, px)


def test_webp_gray_comes_back_as_equal_channels():
    px = _pixels(1)
    back = decode_image(encode_image(ImageData(px, "WEBP"), quality=100))
    np.testing.assert_array_equal(back.pixels, np.repeat(px, 3, axis=2))


def test_jpeg_is_close_and_drops_alpha():
    smooth = np.kron(_pixels(3, h=4, w=4), np.ones((8, 8, 1), np.uint8))
    rgba = np.concatenate([smooth, np.full(smooth.shape[:2] + (1,), 200, np.uint8)], 2)
    back = decode_image(encode_image(ImageData(rgba, "JPEG")))
    assert back.format == "JPEG" and back.pixels.shape == smooth.shape
    assert np.abs(back.pixels.astype(int) - smooth).mean() < 6


def test_16bit_reduced_to_8bit_only_for_8bit_formats():
    px = _pixels(3, np.uint16)
    jpg = decode_image(encode_image(ImageData(px, "JPEG")))
    assert jpg.pixels.dtype == np.uint8
    assert np.abs(jpg.pixels.astype(float) - px / 257.0).max() < 40
    np.testing.assert_array_equal(imageio.to_8bit(np.array([[[0, 257, 65535]]], np.uint16)),
                                  np.array([[[0, 1, 255]]], np.uint8))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "TIFF", "WEBP"])
def test_encoding_is_deterministic(fmt):
    px = _pixels(3)
    a = encode_image(ImageData(px, fmt))
    b = encode_image(ImageData(px.copy(), fmt))
    assert a == b
    if fmt == "PNG":
        assert b"tIME" not in a


def test_pillow_modes_are_converted():
    pal = Image.new("P", (4, 3))
    pal.putpalette([10, 20, 30, 200, 100, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    d = decode_image(_save(pal, "PNG"))
    assert d.pixels.shape == (3, 4, 3)
    assert tuple(d.pixels[1, 1]) == (200, 100, 0) and tuple(d.pixels[0, 0]) == (10, 20, 30)

    pal.info["transparency"] = 0
    d = decode_image(_save(pal, "PNG", transparency=0))
    assert d.pixels.shape == (3, 4, 4)
    assert d.pixels[0, 0, 3] == 0 and d.pixels[1, 1, 3] == 255

    cmyk = Image.new("CMYK", (5, 2), (0, 255, 255, 0))  # pure red
    d = decode_image(_save(cmyk, "JPEG", quality=100))
    assert d.pixels.shape == (2, 5, 3)
    assert d.pixels[..., 0].min() > 230 and d.pixels[..., 1:].max() < 25

    bw = Image.new("1", (3, 3), 1)
    d = decode_image(_save(bw, "PNG"))
    assert d.pixels.shape == (3, 3, 1) and d.pixels.min() == 255


def test_float_images_are_refused_with_a_reason():
    f = Image.fromarray(np.zeros((3, 3), np.float32))
    with pytest.raises(ImageReadError, match="floating-point"):
        decode_image(_save(f, "TIFF"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_pillow(orientation):
    px = _pixels(3, h=3, w=5)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(Image.fromarray(px), "PNG", exif=exif)
    d = decode_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    np.testing.assert_array_equal(d.pixels, expected)
    # written back with the orientation already applied
    again = Image.open(io.BytesIO(encode_image(d)))
    assert again.getexif().get(0x0112, 1) == 1


def test_icc_profile_is_carried_through():
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    d = decode_image(_save(Image.fromarray(_pixels(3)), "PNG", icc_profile=icc))
    assert d.icc_profile == icc
    for fmt in ("PNG", "JPEG", "TIFF", "WEBP"):
        assert Image.open(io.BytesIO(encode_image(d, fmt))).info.get("icc_profile") == icc, fmt
    d16 = ImageData(_pixels(3, np.uint16), "PNG", icc_profile=icc)
    assert Image.open(io.BytesIO(encode_image(d16))).info.get("icc_profile") == icc


# -- bad files ---------------------------------------------------------------------------------------
def _save(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG file whose header claims ``width×height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def _jpeg() -> bytes:
    return _save(Image.fromarray(_pixels(3, h=32, w=32)), "JPEG", quality=90)


BAD = {
    "empty": (b"", "empty file"),
    "text": (b"hello, this is not an image\n", "not an image"),
    "truncated_jpeg_data": (_jpeg()[:-200], "truncated or corrupt JPEG"),
    "truncated_jpeg_header": (_jpeg()[:100], "truncated or corrupt JPEG"),
    "truncated_png": (_save(Image.fromarray(_pixels(3, h=40, w=40)), "PNG")[:300], "truncated or corrupt PNG"),
    "png_magic_only": (b"\x89PNG\r\n\x1a\n", "truncated or corrupt PNG"),
    "absurd_dimensions": (_png_claiming(200_000, 200_000), "too large"),
    "over_our_limit": (_png_claiming(5_000, 5_000), "too large: 5000×5000 (25,000,000 pixels"),
    "zero_width": (_png_claiming(0, 10), "PNG"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_files_raise_one_line_reasons(tmp_path, name):
    data, reason = BAD[name]
    path = tmp_path / "f.png"
    path.write_bytes(data)
    with pytest.raises(ImageReadError) as err:
        read_image(path, max_pixels=10_000_000)
    msg = str(err.value)
    assert reason in msg and "\n" not in msg
    assert path.read_bytes() == data


def test_missing_folder_and_animated(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")
    with pytest.raises(ImageReadError, match="folder"):
        read_image(tmp_path)
    frames = [Image.new("RGB", (4, 4), (i * 50, 0, 0)) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match="3 frames"):
        decode_image(buf.getvalue())


def test_truncated_16bit_colour_png_is_reported():
    data = imageio._encode_png16(_pixels(3, np.uint16, h=30, w=30))
    with pytest.raises(ImageReadError, match="truncated or corrupt"):
        decode_image(data[: len(data) // 2])


# -- atomic writes -----------------------------------------------------------------------------------
def test_atomic_write_never_clobbers_and_leaves_no_temporaries(tmp_path):
    target = tmp_path / "sub" / "out.png"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    with pytest.raises(FileExistsError):
        atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"first"
    atomic_write_bytes(target, b"third", overwrite=True)
    assert target.read_bytes() == b"third"
    assert sorted(os.listdir(target.parent)) == ["out.png"]
    umask = os.umask(0)
    os.umask(umask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~umask)


@pytest.mark.parametrize("exc", [KeyboardInterrupt, OSError])
def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch, exc):
    def boom(fd):
        raise exc("interrupted")

    monkeypatch.setattr(imageio.os, "fsync", boom)
    target = tmp_path / "out.png"
    with pytest.raises(exc):
        atomic_write_bytes(target, b"data" * 1000)
    assert os.listdir(tmp_path) == []
    # an existing file survives an interrupted overwrite
    monkeypatch.undo()
    atomic_write_bytes(target, b"old")
    monkeypatch.setattr(imageio.os, "fsync", boom)
    with pytest.raises(exc):
        atomic_write_bytes(target, b"new", overwrite=True)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["out.png"]


def test_format_names():
    assert imageio.format_for_name("jpg") == "JPEG"
    assert imageio.format_for_name(".TIFF") == "TIFF"
    assert imageio.format_for_name("gif") is None


def test_a_fifo_is_refused_without_reading_it(tmp_path):
    """Opening a FIFO for reading would wait for a writer forever."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(imageio.ImageReadError, match="not a regular file"):
        imageio.read_image(fifo)
