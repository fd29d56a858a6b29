"""A row's test pipeline (the table's by default): `load_image`, `preprocess_input`,
`decode_predictions`."""

import io
import json
import os
from importlib import resources

import numpy as np

from hrnet_keras.configs import IMAGENET_CLASSES, TEST_PIPELINE
from hrnet_keras.decoding import Unfaithful, decode_rgb

RESIZE_SHORT_EDGE = TEST_PIPELINE.resize_short_edge
CROP_SIZE = TEST_PIPELINE.crop
INTERPOLATION = TEST_PIPELINE.interpolation
MEAN = np.asarray(TEST_PIPELINE.mean, dtype="float32")
STD = np.asarray(TEST_PIPELINE.std, dtype="float32")

MAX_ASPECT_RATIO = 20
"""Long edge / short edge above which `load_image` refuses an image, before decoding it.

The short-edge resize makes the long edge `resize * ratio` pixels: a 1x8000 image would
become 256x2048000 pixels (1.5 GB of RGB). Images within the caps go through the pipeline
unchanged. The other cap is Pillow's own `PIL.Image.MAX_IMAGE_PIXELS` (decompression bombs),
read at each call: `load_image` refuses images above it, where Pillow itself only warns
below twice the limit.
"""


def resize_short_edge(image, size=RESIZE_SHORT_EDGE, interpolation=INTERPOLATION):
    """Pillow resize (`interpolation`: "bilinear", "bicubic", ...) so the short edge is
    `size` (mmpretrain's ResizeEdge)."""
    from PIL import Image

    w, h = image.size
    if w < h:
        target = (size, int(size * h / w))
    elif h < w:
        target = (int(size * w / h), size)
    else:
        target = (size, size)
    return image.resize(target, Image.Resampling[interpolation.upper()])


def center_crop(array, size=CROP_SIZE):
    """Crop an HWC array to `size` x `size` at round((H - size) / 2), like mmpretrain."""
    h, w = array.shape[:2]
    if h < size or w < size:
        raise ValueError(f"Image of {h}x{w} is smaller than the {size}x{size} crop.")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return array[top : top + size, left : left + size]


def load_image(image, *, model=None, resize=None, crop=None, interpolation=None):
    """Read an image as a row's test pipeline does: uint8 RGB HWC, `crop` x `crop`.

    `image`: a path, image file bytes, a binary file object, a PIL image, or a uint8
    NumPy array (HxWx3 RGB or HxW gray) of decoded pixels. Files decode to the pixels the
    reference decode gives (`decode_rgb`: OpenCV's, through mmcv); the short edge is resized
    with Pillow, then the center cropped. The pipeline is the table's (224/256 bilinear,
    `hrnet_keras.configs.TEST_PIPELINE`), or that of `model` (a model from `create_model` or
    a row name: `hrnet_keras.data_config`); `resize`, `crop` and `interpolation` override
    it. Fails with a one-line ValueError naming the image if it cannot be decoded
    faithfully, or if its size is beyond the caps (more pixels than
    `PIL.Image.MAX_IMAGE_PIXELS`, an aspect ratio above `MAX_ASPECT_RATIO`).
    """
    p = TEST_PIPELINE if model is None else _pipeline_of(model)
    resize = p.resize_short_edge if resize is None else resize
    crop = p.crop if crop is None else crop
    interpolation = p.interpolation if interpolation is None else interpolation
    rgb = _pixels(image)
    return center_crop(np.asarray(resize_short_edge(rgb, resize, interpolation)), crop)


def _pipeline_of(model):
    from hrnet_keras.pretrained import pipeline_of

    return pipeline_of(model)


def _describe(image):
    """How an error names an image: a path, or what the object is (never its pixels)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes of image data>"
    if isinstance(image, np.ndarray):
        return f"<NumPy array of shape {image.shape}, {image.dtype}>"
    if type(image).__module__.startswith("PIL."):
        return f"<PIL image {image.mode} {image.size[0]}x{image.size[1]}>"
    return f"{image}"


# Pillow modes of an image made in memory (no file behind it) taken as they are: their RGB
# conversion drops alpha and expands gray and palettes, as OpenCV's colour decode does.
IN_MEMORY_MODES = ("1", "L", "LA", "P", "RGB", "RGBA")


def _pixels(image):
    """The RGB PIL image of any input `load_image` takes, checked against the caps."""
    from PIL import Image

    path = _describe(image)
    if isinstance(image, np.ndarray):
        return _from_array(image, path)
    if isinstance(image, Image.Image) and image.format is None:  # made in memory: pixels
        refusal = _size_refusal(*image.size)
        if refusal is not None:
            raise ValueError(f"Refusing image {path}: {refusal}")
        if image.mode not in IN_MEMORY_MODES:
            raise ValueError(
                f"Cannot read image {path}: Pillow mode {image.mode} has no RGB conversion "
                f"here (take one of {', '.join(IN_MEMORY_MODES)})."
            )
        return image.convert("RGB")
    if isinstance(image, (bytes, bytearray, memoryview)):
        image = io.BytesIO(bytes(image))
    if isinstance(image, Image.Image):  # opened from a file: decoded as a file
        return _decode(image, path)
    try:
        opened = Image.open(image)  # reads the header only
    except Image.DecompressionBombError as exc:  # above twice Pillow's limit; not an OSError
        raise ValueError(f"Refusing image {path}: {exc}") from None
    except Exception as exc:  # malformed files raise OSError, SyntaxError, ValueError, ...
        raise ValueError(f"Cannot decode image {path}: {exc}") from exc
    with opened:
        return _decode(opened, path)


def _decode(image, path):
    refusal = _size_refusal(*image.size)
    if refusal is not None:
        raise ValueError(f"Refusing image {path}: {refusal}")
    try:
        return decode_rgb(image)
    except Unfaithful as exc:
        raise ValueError(f"Cannot decode image {path} as the reference does: {exc}") from None
    except Exception as exc:  # malformed files raise OSError, SyntaxError, ValueError, ...
        raise ValueError(f"Cannot decode image {path}: {exc}") from exc


def _from_array(array, path):
    from PIL import Image

    if array.dtype != np.uint8 or not (
        array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3))
    ):
        raise ValueError(
            f"Cannot read image {path}: load_image takes decoded pixels as a uint8 HxWx3 (RGB) "
            "or HxW (gray) array; convert with np.clip(x, 0, 255).astype('uint8')."
        )
    refusal = _size_refusal(array.shape[1], array.shape[0])
    if refusal is not None:
        raise ValueError(f"Refusing image {path}: {refusal}")
    gray = array.ndim == 2 or array.shape[2] == 1
    if gray:
        array = np.repeat(array.reshape(array.shape[:2])[..., None], 3, axis=2)
    return Image.fromarray(np.ascontiguousarray(array))


def _size_refusal(width, height):
    """Why an image of this size is refused, or None."""
    from PIL import Image

    if min(width, height) < 1:
        return f"its size is {width}x{height} pixels."
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > limit:
        return (
            f"{width}x{height} is {width * height} pixels, above Pillow's limit of {limit} "
            "(PIL.Image.MAX_IMAGE_PIXELS; a decompression bomb?)."
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return (
            f"{width}x{height} pixels exceed the aspect ratio cap of {MAX_ASPECT_RATIO}:1 "
            "(hrnet_keras.preprocessing.MAX_ASPECT_RATIO)."
        )
    return None


def preprocess_input(x, data_format=None, *, model=None):
    """Normalise 0-255 RGB images with the table's mean and std (or those of `model`: a
    model from `create_model` or a row name); returns float32.

    Accepts a single image or a batch, channels-last unless `data_format` (or
    `keras.config.image_data_format()`) says channels-first.
    """
    import keras

    data_format = data_format or keras.config.image_data_format()
    mean, std = MEAN, STD
    if model is not None:
        p = _pipeline_of(model)
        mean, std = np.asarray(p.mean, "float32"), np.asarray(p.std, "float32")
    if isinstance(x, (str, bytes, os.PathLike)):
        raise ValueError(
            f"preprocess_input takes 0-255 RGB pixels (an array), got {type(x).__name__}; "
            "read images with load_image first."
        )
    x = np.asarray(x, dtype="float32")
    if x.ndim < 3 or x.shape[-1 if data_format == "channels_last" else -3] != 3:
        raise ValueError(
            f"preprocess_input takes RGB images with 3 channels ({data_format}), got an array "
            f"of shape {x.shape}."
        )
    if data_format == "channels_first":
        shape = (3, 1, 1)
        return (x - mean.reshape(shape)) / std.reshape(shape)
    return (x - mean) / std


def imagenet_classes():
    """The 1000 classes in checkpoint order: a list of (wnid, name)."""
    text = resources.files(__package__).joinpath("imagenet_classes.json").read_text()
    return [tuple(pair) for pair in json.loads(text)]


def decode_predictions(preds, top=5):
    """Top-`top` (wnid, name, score) tuples per row of a (batch, 1000) array."""
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != IMAGENET_CLASSES:
        raise ValueError(
            f"decode_predictions expects a (batch, {IMAGENET_CLASSES}) array, got shape {preds.shape}."
        )
    classes = imagenet_classes()
    results = []
    for row in preds:
        order = np.argsort(-row, kind="stable")[:top]
        results.append([(*classes[i], float(row[i])) for i in order])
    return results
