"""Image decoding as the reference does it: `mmcv.imfrombytes(data, flag="color")`.

mmpretrain decodes with OpenCV (IMREAD_COLOR, then BGR->RGB); this package reads with
Pillow. `DECODED` is the table of the layouts (format, Pillow mode, how the file stores
its samples) whose pixels are decoded here, each with the conversion that gives OpenCV's
pixels; `test_decode_like_reference` proves every row against mmcv on a sample file.
Every other layout is refused by name (`Unfaithful`): 16-bit TIFFs, associated alpha,
CMYK TIFFs, GIFs, ...
"""

import numpy as np

ORIENTATION = 0x0112  # EXIF tag; its values 2-8 and what undoes each (EXIF 2.3, Pillow's own)
_ORIENTED = {
    2: "FLIP_LEFT_RIGHT",
    3: "ROTATE_180",
    4: "FLIP_TOP_BOTTOM",
    5: "TRANSPOSE",
    6: "ROTATE_270",
    7: "TRANSVERSE",
    8: "ROTATE_90",
}
_ADOBE_TRANSFORMS = {0: "Adobe CMYK", 2: "Adobe YCCK"}
_TIFF_ALPHA = {0: "unspecified extra sample", 1: "associated alpha", 2: "unassociated alpha"}
LOADED = "already loaded: storage unknown"


class Unfaithful(ValueError):
    """An image whose decoded pixels here would differ from the reference decode's."""


def layout(image):
    """(format, Pillow mode, storage) of an opened image: the key of `DECODED`.

    The storage tells apart files that Pillow opens in one mode but OpenCV decodes
    otherwise: Pillow's raw mode (PNG, BMP: "BGR;15" is 16-bit RGB555), the JPEG's
    Adobe colour transform, a TIFF's bits per sample, extra sample and planarity.
    """
    kind, mode = image.format, image.mode
    if kind in ("JPEG", "MPO"):
        storage = _ADOBE_TRANSFORMS.get(image.info.get("adobe_transform"), "no Adobe marker")
        return kind, mode, storage if mode == "CMYK" else ""
    if kind == "TIFF":
        tags = image.tag_v2
        storage = f"{max(tags.get(258, (1,)))}-bit"
        if mode in ("LA", "RGBA"):
            storage += ", " + _TIFF_ALPHA.get(tags.get(338, (0,))[0], "unknown extra sample")
        if tags.get(284, 1) != 1:
            storage += ", planar"
        return kind, mode, storage
    if kind in ("PNG", "BMP"):
        if not image.tile:
            return kind, mode, LOADED
        tile = image.tile[0]
        if tile.codec_name == "bmp_rle":
            return kind, mode, {1: "RLE8", 2: "RLE4"}[image.info["compression"]]
        return kind, mode, tile.args[0] if isinstance(tile.args, tuple) else tile.args
    return kind, mode, ""


def _pillow(image):
    return image.convert("RGB")


def _high_byte(image):
    """16-bit grayscale: the high byte (libpng's strip_16), as gray RGB."""
    from PIL import Image

    gray = (np.asarray(image).astype("uint32") >> 8).astype("uint8")
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))


def _cmyk(image):
    """OpenCV's CMYK->RGB of a JPEG (icvCvt_CMYK2BGR_8u_C4C3R) from Pillow's CMYK, which
    Pillow inverts (Adobe polarity) from the values the JPEG decoder gives (libjpeg
    converts YCCK to CMYK first, for both)."""
    from PIL import Image

    raw = 255 - np.asarray(image).astype("int32")
    k = raw[..., 3:]
    return Image.fromarray((k - (((255 - raw[..., :3]) * k) >> 8)).astype("uint8"))


def _premultiplied(image):
    """Unassociated RGBA as libtiff's RGBA interface gives it to OpenCV: each colour
    times alpha, (c * a + 127) // 255, then alpha dropped."""
    from PIL import Image

    rgba = np.asarray(image).astype("uint32")
    return Image.fromarray(((rgba[..., :3] * rgba[..., 3:] + 127) // 255).astype("uint8"))


def _shifted(bits):
    """16-bit BMPs: Pillow scales each n-bit sample v to v * 255 // (2**n - 1), OpenCV
    shifts it left to 8 bits; a lookup table takes Pillow's value to OpenCV's."""

    def lut(n):
        top = (1 << n) - 1
        return [(-(-v * top // 255)) << (8 - n) for v in range(256)]  # ceil undoes the floor

    def convert(image):
        return image.point(lut(bits[0]) + lut(bits[1]) + lut(bits[2]))

    return convert


def _table():
    rows = {}
    for kind in ("JPEG", "MPO"):
        rows.update({(kind, "L", ""): _pillow, (kind, "RGB", ""): _pillow})
    rows.update({("JPEG", "CMYK", name): _cmyk for name in _ADOBE_TRANSFORMS.values()})
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA"):
        rows[("PNG", mode, mode)] = _pillow  # 8-bit (1-bit for "1") samples
    rows[("PNG", "P", "P;4")] = _pillow
    rows[("PNG", "RGB", "RGB;16B")] = _pillow  # Pillow and libpng keep the high byte
    rows[("PNG", "RGBA", "RGBA;16B")] = _pillow
    rows[("PNG", "RGBA", "LA;16B")] = _pillow  # 16-bit gray and alpha, opened as RGBA
    rows[("PNG", "I;16", "I;16B")] = _high_byte
    for mode, raw in (("1", "1"), ("L", "L"), ("P", "P"), ("P", "P;4"), ("P", "RLE8"),
                      ("P", "RLE4"), ("RGB", "BGR"), ("RGB", "BGRX"), ("RGBA", "BGRA")):  # fmt: skip
        rows[("BMP", mode, raw)] = _pillow
    rows[("BMP", "RGB", "BGR;15")] = _shifted((5, 5, 5))
    rows[("BMP", "RGB", "BGR;16")] = _shifted((5, 6, 5))
    rows.update({("WEBP", "RGB", ""): _pillow, ("WEBP", "RGBA", ""): _pillow})
    for mode, bits in (("1", "1-bit"), ("L", "8-bit"), ("P", "8-bit"), ("RGB", "8-bit")):
        rows[("TIFF", mode, bits)] = _pillow
    rows[("TIFF", "LA", "8-bit, unassociated alpha")] = _pillow  # OpenCV drops gray's alpha
    rows[("TIFF", "RGBA", "8-bit, unassociated alpha")] = _premultiplied
    return rows


DECODED = _table()
"""(format, Pillow mode, storage) -> the conversion giving OpenCV's RGB pixels."""


def describe(key):
    """'mode RGBA of a TIFF image (8-bit, associated alpha)': a layout in words."""
    kind, mode, storage = key
    return f"mode {mode} of a {kind} image" + (f" ({storage})" if storage else "")


def decode_rgb(image):
    """The RGB pixels (a Pillow image) that mmpretrain's reference decode,
    `mmcv.imfrombytes(data, flag="color")` (OpenCV's IMREAD_COLOR) then BGR->RGB, gives
    for an image as `Image.open` gives it (not yet loaded: PNG and BMP tell their storage
    only then), its EXIF orientation applied. Raises `Unfaithful` naming the layout for
    one not in `DECODED`."""
    from PIL import Image

    key = layout(image)
    convert = DECODED.get(key)
    if convert is None:
        raise Unfaithful(
            f"Pillow {describe(key)} is not decoded here (hrnet_keras.decoding.DECODED "
            "lists what is); convert it to an 8-bit RGB PNG or JPEG."
        )
    rgb = convert(image)
    rgb.load()
    transpose = _ORIENTED.get(image.getexif().get(ORIENTATION, 1))
    return rgb if transpose is None else rgb.transpose(Image.Transpose[transpose])
