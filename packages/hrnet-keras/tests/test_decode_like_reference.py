"""`load_image` decodes as the table's reference does: `mmcv.imfrombytes(flag="color")`
(OpenCV), then BGR->RGB; what it cannot decode so is a ValueError naming the file."""

import mmcv
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hrnet_keras.preprocessing import center_crop, decode_rgb, load_image, resize_short_edge

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (240, 300, 3), dtype=np.uint8)


def reference(path):
    """The reference pipeline: mmcv's OpenCV decode, BGR->RGB, the same resize and crop."""
    pixels = mmcv.imfrombytes(open(path, "rb").read(), flag="color")[..., ::-1]
    return pixels, center_crop(np.asarray(resize_short_edge(Image.fromarray(pixels))))


def check(path):
    decoded, cropped = reference(path)
    with Image.open(path) as image:
        assert np.array_equal(np.asarray(decode_rgb(image)), decoded)
    assert np.array_equal(load_image(path), cropped)
    return decoded


def save(tmp_path, name, image, **options):
    path = tmp_path / name
    image.save(path, **options)
    return path


def test_16_bit_grayscale_png_keeps_the_high_byte(tmp_path):
    gray = RNG.integers(0, 65536, (240, 300)).astype(np.uint16)
    path = save(tmp_path, "gray16.png", Image.fromarray(gray))
    assert Image.open(path).mode == "I;16"
    decoded = check(path)
    assert np.array_equal(decoded[..., 1], gray >> 8)  # not all white
    (tmp_path / "rgb16.png").write_bytes(png16(RNG.integers(0, 65536, (240, 300, 3))))
    check(tmp_path / "rgb16.png")


def png16(rgb):
    """A 16-bit RGB PNG of `rgb` (Pillow writes none): IHDR, one IDAT, IEND."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    h, w, _ = rgb.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in rgb)
    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_cmyk_jpeg_as_opencv_converts_it(tmp_path):
    path = save(tmp_path, "cmyk.jpg", Image.fromarray(RGB).convert("CMYK"), quality=90)
    assert Image.open(path).mode == "CMYK"
    check(path)
    assert not np.array_equal(load_image(path), np.asarray(load_image_pillow_cmyk(path)))


def load_image_pillow_cmyk(path):
    """Pillow's own CMYK->RGB, 1 off OpenCV's on most pixels: what load_image gave before."""
    image = Image.open(path).convert("RGB")
    return center_crop(np.asarray(resize_short_edge(image)))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("kind", ["JPEG", "PNG"])
def test_exif_orientation_applied_as_opencv_does(tmp_path, orientation, kind):
    image = Image.fromarray(RGB[:, :260])
    exif = image.getexif()
    exif[0x0112] = orientation
    path = save(tmp_path, f"o{orientation}.{kind.lower()}", image, format=kind, exif=exif.tobytes())
    decoded = check(path)
    assert decoded.shape[:2] == ((240, 260) if orientation < 5 else (260, 240))


@pytest.mark.parametrize(
    "mode, kind", [("L", "JPEG"), ("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"),
                   ("RGBA", "PNG"), ("RGB", "BMP"), ("RGB", "WEBP"), ("RGB", "TIFF")],
)  # fmt: skip
def test_other_modes_and_formats_equal_the_reference(tmp_path, mode, kind):
    image = Image.fromarray(RGB).convert(mode)
    options = {"lossless": True} if kind == "WEBP" else {}
    check(save(tmp_path, f"{mode}.{kind.lower()}", image, format=kind, **options))


@pytest.mark.parametrize("mode, kind", [("RGB", "GIF"), ("F", "TIFF"), ("CMYK", "TIFF")])
def test_what_it_cannot_decode_faithfully_is_refused_naming_the_file(tmp_path, mode, kind):
    image = Image.fromarray(RGB[..., 0]).convert(mode) if mode == "F" else Image.fromarray(RGB)
    image = image.convert(mode) if mode == "CMYK" else image
    path = save(tmp_path, f"x.{kind.lower()}", image, format=kind)
    with pytest.raises(ValueError) as caught:
        load_image(path)
    assert str(caught.value).startswith(f"Cannot decode image {path} as the reference does: ")
