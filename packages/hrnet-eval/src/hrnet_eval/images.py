"""Read one `Item`'s bytes and run the table's test pipeline (hrnet-keras' `load_image`).

TFRecord items hold a serialized `tf.train.Example` (tensorflow-datasets'
imagenet2012: `image`, `label`, `file_name`); it is parsed here from the
protobuf wire format, so workers need not import TensorFlow.
"""

import io


class ImageError(ValueError):
    """An image that cannot be read or decoded; the message names it."""


class _NamedBytes(io.BytesIO):
    """Image bytes whose repr (used in Pillow's messages) names where they came from."""

    def __init__(self, payload, where):
        super().__init__(payload)
        self.where = where

    def __repr__(self):
        return self.where


def load(item):
    """(uint8 224x224x3 RGB array, label, name) of one item, via `hrnet_keras.load_image`."""
    from hrnet_keras import load_image

    label, name, where = item.label, item.name, item.where
    try:
        if item.kind == "file":
            return load_image(item.source), label, name
        with open(item.source, "rb") as f:
            f.seek(item.offset)
            payload = f.read(item.length)
        if len(payload) != item.length:
            raise ImageError(f"Cannot read image {where}: the file ends early.")
        if item.kind == "tfrecord":
            features = _parse_record(payload, where)
            name = _one(features, "file_name", where).decode()
            label = _one(features, "label", where)
            payload = _one(features, "image", where)
            where = f"{item.source}[{name}]"
            if not 0 <= label < 1000:
                raise ImageError(f"Record {where} has label {label}, not a class 0-999.")
        image = load_image(_NamedBytes(payload, where))
    except ImageError:
        raise
    except ValueError as exc:  # load_image's one-line decode error, naming the image
        raise ImageError(str(exc)) from None
    except OSError as exc:
        raise ImageError(f"Cannot read image {where}: {exc}") from None
    return image, label, name


def _parse_record(payload, where):
    try:
        return parse_example(payload)
    except ValueError as exc:
        raise ImageError(f"Record {where} is not a tf.train.Example ({exc}).") from None


def _one(features, key, where):
    values = features.get(key)
    if not values or len(values) != 1:
        raise ImageError(
            f"Record {where} has no single {key!r} feature (not a tfds imagenet2012 record)."
        )
    return values[0]


def _varint(buf, pos):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf):
    """(field number, wire type, value) of a protobuf message; LEN values as bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value = bytes(buf[pos : pos + size])
            if len(value) != size:
                raise ValueError("truncated field")
            pos += size
        elif wire == 1:
            value, pos = bytes(buf[pos : pos + 8]), pos + 8
        elif wire == 5:
            value, pos = bytes(buf[pos : pos + 4]), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _int64s(buf):
    out = []
    for number, wire, value in _fields(buf):
        if number != 1:
            continue
        if wire == 0:
            out.append(value)
        else:  # packed
            pos = 0
            while pos < len(value):
                v, pos = _varint(value, pos)
                out.append(v)
    return [v - (1 << 64) if v >= 1 << 63 else v for v in out]


def parse_example(buf):
    """A serialized tf.train.Example -> {key: list of bytes or ints} (float lists skipped)."""
    features = {}
    for number, _, message in _fields(buf):
        if number != 1:  # Example.features
            continue
        for entry_number, _, entry in _fields(message):  # Features.feature map entries
            if entry_number != 1:
                continue
            key, feature = None, b""
            for n, _, v in _fields(entry):
                if n == 1:
                    key = v.decode()
                elif n == 2:
                    feature = v
            for kind, _, values in _fields(feature):
                if kind == 1:  # BytesList
                    features[key] = [v for n, _, v in _fields(values) if n == 1]
                elif kind == 3:  # Int64List
                    features[key] = _int64s(values)
    return features
