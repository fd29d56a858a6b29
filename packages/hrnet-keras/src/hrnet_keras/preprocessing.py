"""The table's test pipeline: `load_image`, `preprocess_input`, `decode_predictions`."""

import json
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


def load_image(path, *, resize=RESIZE_SHORT_EDGE, crop=CROP_SIZE, interpolation=INTERPOLATION):
    """Read an image file as the table's test pipeline does: uint8 RGB HWC, 224x224.

    Decodes to the pixels the reference decode gives (`decode_rgb`: OpenCV's, through
    mmcv), resizes the short edge to 256 with Pillow (bilinear), crops the center
    224x224 (`hrnet_keras.configs.TEST_PIPELINE`); another row's pipeline gives its own
    `resize`, `crop` and `interpolation` (`configs.Preset.pipeline`). Fails with a one-line ValueError
    naming the file if it cannot be decoded faithfully, or if its header gives a size
    beyond the caps (more pixels than `PIL.Image.MAX_IMAGE_PIXELS`, an aspect ratio
    above `MAX_ASPECT_RATIO`).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the header only
            refusal = _size_refusal(*image.size)
            if refusal is None:
                image = decode_rgb(image)
    except Image.DecompressionBombError as exc:  # above twice Pillow's limit; not an OSError
        refusal = str(exc)
    except Unfaithful as exc:
        raise ValueError(f"Cannot decode image {path} as the reference does: {exc}") from None
    except Exception as exc:  # malformed files raise OSError, SyntaxError, ValueError, ...
        raise ValueError(f"Cannot decode image {path}: {exc}") from exc
    if refusal is not None:
        raise ValueError(f"Refusing image {path}: {refusal}")
    return center_crop(np.asarray(resize_short_edge(image, resize, interpolation)), crop)


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


def preprocess_input(x, data_format=None):
    """Normalise 0-255 RGB images with the table's mean and std; returns float32.

    Accepts a single image or a batch, channels-last unless `data_format` (or
    `keras.config.image_data_format()`) says channels-first.
    """
    import keras

    data_format = data_format or keras.config.image_data_format()
    x = np.asarray(x, dtype="float32")
    if data_format == "channels_first":
        shape = (3, 1, 1)
        return (x - MEAN.reshape(shape)) / STD.reshape(shape)
    return (x - MEAN) / STD


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
