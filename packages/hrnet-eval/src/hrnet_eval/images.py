"""Read one `Item`'s bytes and run a row's test pipeline (hrnet-keras' `load_image`).

TFRecord items hold a serialized `tf.train.Example` (tensorflow-datasets'
imagenet2012: `image`, `label`, `file_name`); `hrnet_eval.tfrecord` checks its
checksums and parses it with protobuf, so workers need not import TensorFlow.
"""

import hashlib
import io
import typing

from hrnet_keras.configs import IMAGENET_CLASSES, TEST_PIPELINE
from hrnet_keras.preprocessing import load_image

from hrnet_eval import storage, tfrecord
from hrnet_eval.errors import EvalError


class ImageError(EvalError, ValueError):
    """An image that cannot be read or decoded; the message names it."""

    hint = "--skip-corrupt skips unreadable images"


class Decoding(typing.NamedTuple):
    """What a decoded image depends on: a row's pipeline less its normalisation (which
    runs on the device), named as `load_image`'s arguments."""

    crop: int
    resize: int
    interpolation: str

    @classmethod
    def of(cls, pipeline):
        """The decoding of a `hrnet_keras.configs.PipelineConfig`."""
        return cls(pipeline.crop, pipeline.resize_short_edge, pipeline.interpolation)

    def __str__(self):
        return f"{self.crop}/{self.resize} {self.interpolation}"


TABLE = Decoding.of(TEST_PIPELINE)  # the mmclassification table's


class _NamedBytes(io.BytesIO):
    """Image bytes whose repr (used in Pillow's messages) names where they came from."""

    def __init__(self, payload, where):
        super().__init__(payload)
        self.where = where

    def __repr__(self):
        return self.where


def read_bytes(item):
    """The bytes of one item: the whole file, or the member's or record's data in its
    container (a TFRecord record's checksums checked); an item in object storage by one
    read of its object or byte range. Raises `ImageError` naming it."""
    remote = storage.is_uri(item.source)
    try:
        if item.kind == "tfrecord":
            return tfrecord.read(
                item.source, item.offset, item.length, storage.read if remote else None
            )
        if remote:
            if item.kind == "file":
                return storage.read(item.source)
            payload = storage.read(item.source, item.offset, item.length)
        else:
            with open(item.source, "rb") as f:
                if item.kind == "file":
                    return f.read()
                f.seek(item.offset)
                payload = f.read(item.length)
    except tfrecord.RecordError as exc:
        raise ImageError(str(exc)) from None
    except OSError as exc:
        raise ImageError(f"Cannot read image {item.where}: {exc}") from None
    if len(payload) != item.length:
        raise ImageError(f"Cannot read image {item.where}: the file ends early.")
    return payload


def digest(payload):
    """A fast hash of an item's bytes (what a resumed run compares): 32 hex digits."""
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def load(item, payload=None, decoding=TABLE):
    """(uint8 crop x crop x 3 RGB array, label, name) of one item, via
    `hrnet_keras.preprocessing.load_image`; `payload`: its bytes, when `read_bytes` gave
    them already; `decoding`: the row's `Decoding`."""
    label, name, where = item.label, item.name, item.where
    if payload is None:
        payload = read_bytes(item)
    try:
        if item.kind == "tfrecord":
            features = _parse_record(payload, where)
            name = _one(features, "file_name", bytes, where).decode(errors="replace")
            label = _one(features, "label", int, where)
            payload = _one(features, "image", bytes, where)
            where = f"{item.source}[{name}]"
            if not 0 <= label < IMAGENET_CLASSES:
                raise ImageError(
                    f"Record {where} has label {label}, not a class 0-{IMAGENET_CLASSES - 1}."
                )
        image = load_image(_NamedBytes(payload, where), **decoding._asdict())
    except ImageError:
        raise
    except ValueError as exc:  # load_image's one-line decode error, naming the image
        raise ImageError(str(exc)) from None
    except OSError as exc:
        raise ImageError(f"Cannot read image {where}: {exc}") from None
    return image, label, name


def _parse_record(payload, where):
    try:
        return tfrecord.parse_example(payload)
    except ValueError as exc:
        raise ImageError(f"Record {where} is not a tf.train.Example ({exc}).") from None


def _one(features, key, kind, where):
    values = features.get(key)
    if not values or len(values) != 1 or not isinstance(values[0], kind):
        raise ImageError(
            f"Record {where} has no single {kind.__name__} {key!r} feature (not a tfds "
            "imagenet2012 record)."
        )
    return values[0]
