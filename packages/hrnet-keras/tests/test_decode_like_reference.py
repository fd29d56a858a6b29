"""`load_image` decodes as the table's reference does: `mmcv.imfrombytes(flag="color")`
(OpenCV), then BGR->RGB; what it cannot decode so is a ValueError naming the file."""

from pathlib import Path

import mmcv
import numpy as np
import pytest
from PIL import Image

from hrnet_keras.decoding import DECODED, describe, layout
from hrnet_keras.preprocessing import center_crop, decode_rgb, load_image, resize_short_edge

FIXTURES = Path(__file__).parent / "fixtures"  # written by fixtures/make_fixtures.py

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
    check(FIXTURES / "rgb16.png")


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
@pytest.mark.parametrize("kind", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_applied_as_opencv_does(tmp_path, orientation, kind):
    image = Image.fromarray(RGB[:, :260])
    exif = image.getexif()
    exif[0x0112] = orientation
    path = save(tmp_path, f"o{orientation}.{kind.lower()}", image, format=kind, exif=exif.tobytes())
    decoded = check(path)
    assert decoded.shape[:2] == ((240, 260) if orientation < 5 else (260, 240))


def pillow(mode, kind, **options):
    """A sample Pillow writes: RGB noise (with alpha noise for the alpha modes) as `mode`."""

    def write(tmp_path):
        if mode in ("LA", "RGBA"):
            image = Image.fromarray(np.dstack([RGB, RGB[..., 1]]), "RGBA").convert(mode)
        elif mode == "I;16":
            image = Image.fromarray(RNG.integers(0, 65536, RGB.shape[:2]).astype(np.uint16))
        elif mode == "F":
            image = Image.fromarray(RGB[..., 0].astype("float32"))
        else:
            image = Image.fromarray(RGB).convert(mode, colors=options.pop("colors", 256))
        if kind == "MPO":
            options.update(save_all=True, append_images=[image])
        path = tmp_path / f"{mode}-{len(list(tmp_path.iterdir()))}.{kind.lower()}"
        image.save(path, format=kind, **options)
        return path

    return write


def fixture(name):
    return lambda tmp_path: FIXTURES / name


UNASSOCIATED = "8-bit, unassociated alpha"
# (layout, sample): at least one sample file of every row of DECODED.
SAMPLES = [
    (("JPEG", "L", ""), pillow("L", "JPEG")),
    (("JPEG", "RGB", ""), pillow("RGB", "JPEG")),
    (("JPEG", "RGB", ""), pillow("RGB", "JPEG", progressive=True)),
    (("JPEG", "RGB", ""), pillow("RGB", "JPEG", subsampling=0)),
    (("JPEG", "CMYK", "Adobe CMYK"), pillow("CMYK", "JPEG")),
    (("JPEG", "CMYK", "Adobe CMYK"), pillow("CMYK", "JPEG", progressive=True)),
    (("JPEG", "CMYK", "Adobe YCCK"), fixture("ycck.jpg")),
    (("MPO", "L", ""), pillow("L", "MPO")),
    (("MPO", "RGB", ""), pillow("RGB", "MPO")),
    (("PNG", "1", "1"), pillow("1", "PNG")),
    (("PNG", "L", "L"), pillow("L", "PNG")),
    (("PNG", "LA", "LA"), pillow("LA", "PNG")),
    (("PNG", "P", "P"), pillow("P", "PNG")),
    (("PNG", "P", "P"), pillow("P", "PNG", transparency=bytes(range(256)))),
    (("PNG", "P", "P;4"), pillow("P", "PNG", bits=4, colors=16)),
    (("PNG", "RGB", "RGB"), pillow("RGB", "PNG")),
    (("PNG", "RGB", "RGB"), pillow("RGB", "PNG", transparency=(5, 5, 5))),
    (("PNG", "RGBA", "RGBA"), pillow("RGBA", "PNG")),
    (("PNG", "RGB", "RGB;16B"), fixture("rgb16.png")),
    (("PNG", "RGBA", "RGBA;16B"), fixture("rgba16.png")),
    (("PNG", "RGBA", "LA;16B"), fixture("la16.png")),
    (("PNG", "I;16", "I;16B"), pillow("I;16", "PNG")),
    (("BMP", "1", "1"), pillow("1", "BMP")),
    (("BMP", "L", "L"), pillow("L", "BMP")),
    (("BMP", "P", "P"), pillow("P", "BMP")),
    (("BMP", "P", "P;4"), fixture("p4.bmp")),
    (("BMP", "P", "RLE8"), fixture("rle8.bmp")),
    (("BMP", "P", "RLE4"), fixture("rle4.bmp")),
    (("BMP", "RGB", "BGR"), pillow("RGB", "BMP")),
    (("BMP", "RGB", "BGRX"), pillow("RGBA", "BMP")),
    (("BMP", "RGBA", "BGRA"), fixture("bgra32_v5.bmp")),
    (("BMP", "RGB", "BGR;15"), fixture("rgb555.bmp")),
    (("BMP", "RGB", "BGR;16"), fixture("rgb565.bmp")),
    (("WEBP", "RGB", ""), pillow("RGB", "WEBP", lossless=True)),
    (("WEBP", "RGB", ""), pillow("RGB", "WEBP", quality=80)),
    (("WEBP", "RGBA", ""), pillow("RGBA", "WEBP", lossless=True)),
    (("WEBP", "RGBA", ""), pillow("RGBA", "WEBP", quality=80)),
    (("TIFF", "1", "1-bit"), pillow("1", "TIFF")),
    (("TIFF", "L", "8-bit"), pillow("L", "TIFF", compression="tiff_lzw")),
    (("TIFF", "P", "8-bit"), pillow("P", "TIFF")),
    (("TIFF", "RGB", "8-bit"), pillow("RGB", "TIFF")),
    (("TIFF", "RGB", "8-bit"), pillow("RGB", "TIFF", compression="jpeg")),
    (("TIFF", "LA", UNASSOCIATED), pillow("LA", "TIFF")),
    (("TIFF", "RGBA", UNASSOCIATED), pillow("RGBA", "TIFF")),
    (("TIFF", "RGBA", UNASSOCIATED), pillow("RGBA", "TIFF", compression="tiff_lzw")),
    (("TIFF", "RGBA", UNASSOCIATED), pillow("RGBA", "TIFF", compression="tiff_adobe_deflate")),
    (("TIFF", "RGBA", UNASSOCIATED), pillow("RGBA", "TIFF", compression="packbits")),
]
# (layout, sample): layouts whose pixels would differ from OpenCV's, refused by name.
REFUSED = [
    (("TIFF", "I;16", "16-bit"), pillow("I;16", "TIFF")),
    (("TIFF", "RGB", "16-bit"), fixture("rgb48.tif")),
    (("TIFF", "RGBA", "16-bit, unassociated alpha"), fixture("rgba64.tif")),
    (("TIFF", "RGBA", "8-bit, associated alpha"), fixture("rgba_associated.tif")),
    (("TIFF", "CMYK", "8-bit"), pillow("CMYK", "TIFF")),
    (("TIFF", "F", "32-bit"), pillow("F", "TIFF")),
    (("GIF", "P", ""), pillow("RGB", "GIF")),
]


def test_every_row_of_the_table_has_a_sample():
    assert {key for key, _ in SAMPLES} == set(DECODED)
    assert not {key for key, _ in REFUSED} & set(DECODED)


@pytest.mark.parametrize("key, sample", SAMPLES, ids=[describe(k) for k, _ in SAMPLES])
def test_each_decoded_layout_equals_the_reference(tmp_path, key, sample):
    path = sample(tmp_path)
    with Image.open(path) as image:
        assert layout(image) == key
    check(path)


@pytest.mark.parametrize("key, sample", REFUSED, ids=[describe(k) for k, _ in REFUSED])
def test_other_layouts_are_refused_by_name(tmp_path, key, sample):
    path = sample(tmp_path)
    with Image.open(path) as image:
        assert layout(image) == key
    with pytest.raises(ValueError) as caught:
        load_image(path)
    message = str(caught.value)
    assert message.startswith(f"Cannot decode image {path} as the reference does: ")
    assert f"Pillow {describe(key)} is not decoded here" in message
    assert "\n" not in message


def test_what_pillow_gave_before_differed(tmp_path):
    """The conversions that are not Pillow's own: without them these differ from OpenCV."""
    for name, most in (("rgb555.bmp", 7), ("rgb565.bmp", 7)):
        with Image.open(FIXTURES / name) as image:
            before = np.asarray(image.convert("RGB")).astype(int)
        assert np.abs(before - reference(FIXTURES / name)[0]).max() == most
    path = pillow("RGBA", "TIFF")(tmp_path)
    with Image.open(path) as image:
        before = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(before - reference(path)[0]).max() > 200


def test_a_loaded_png_is_refused_saying_so(tmp_path):
    path = pillow("RGB", "PNG")(tmp_path)
    with Image.open(path) as image:
        image.load()
        with pytest.raises(ValueError, match="already loaded: storage unknown"):
            decode_rgb(image)
