"""TFRecord files of `tf.train.Example`s, read without TensorFlow.

A record is: uint64 length, uint32 masked CRC32C of those 8 bytes, the data, uint32 masked
CRC32C of the data (little endian). Both checksums are checked. The Example messages are
TensorFlow's (`tensorflow/core/example/{example,feature}.proto`, same field numbers) declared
under this package's own protobuf package name, in a pool of their own, so they never clash
with TensorFlow's when both are loaded.
"""

import os
import struct

import google_crc32c
from google.protobuf import descriptor_pb2, descriptor_pool, message, message_factory, text_format

HEADER = 12  # uint64 length + uint32 masked CRC32C
FOOTER = 4  # uint32 masked CRC32C of the data

_PROTO = """
name: "hrnet_eval/example.proto"
package: "hrnet_eval.tfrecord"
syntax: "proto3"
message_type {
  name: "BytesList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_BYTES }
}
message_type {
  name: "FloatList"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_FLOAT }
}
message_type {
  name: "Int64List"
  field { name: "value" number: 1 label: LABEL_REPEATED type: TYPE_INT64 }
}
message_type {
  name: "Feature"
  field { name: "bytes_list" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".hrnet_eval.tfrecord.BytesList" oneof_index: 0 }
  field { name: "float_list" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".hrnet_eval.tfrecord.FloatList" oneof_index: 0 }
  field { name: "int64_list" number: 3 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".hrnet_eval.tfrecord.Int64List" oneof_index: 0 }
  oneof_decl { name: "kind" }
}
message_type {
  name: "Features"
  field { name: "feature" number: 1 label: LABEL_REPEATED type: TYPE_MESSAGE
          type_name: ".hrnet_eval.tfrecord.Features.FeatureEntry" }
  nested_type {
    name: "FeatureEntry"
    field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_MESSAGE
            type_name: ".hrnet_eval.tfrecord.Feature" }
    options { map_entry: true }
  }
}
message_type {
  name: "Example"
  field { name: "features" number: 1 label: LABEL_OPTIONAL type: TYPE_MESSAGE
          type_name: ".hrnet_eval.tfrecord.Features" }
}
"""

_pool = descriptor_pool.DescriptorPool()
_pool.Add(text_format.Parse(_PROTO, descriptor_pb2.FileDescriptorProto()))
Example = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("hrnet_eval.tfrecord.Example")
)


class RecordError(ValueError):
    """A TFRecord file or record that cannot be read; the message names the file and byte."""


def masked_crc32c(data):
    """TFRecord's checksum: CRC32C rotated right by 15 bits plus 0xa282ead8 (mod 2**32)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _length(header, path, pos):
    """The data length in a 12-byte record header at byte `pos`, its checksum checked."""
    (crc,) = struct.unpack("<I", header[8:])
    if masked_crc32c(header[:8]) != crc:
        raise RecordError(
            f"{path}: the TFRecord header at byte {pos} fails its CRC32C check (the file is "
            "damaged: prepare or download it again)."
        )
    return struct.unpack("<Q", header[:8])[0]


def index(path, stream=None, size=None):
    """(offset, length) of each record's data in a TFRecord file.

    Reads the headers only (their checksums checked); the data is checked by `read`.
    `stream` (with `size`): a sequential reader of the file named `path` (an object in
    object storage), read through instead of seeking.
    """
    if stream is None:
        with open(path, "rb") as f:
            return _index(f, os.path.getsize(path), path, lambda n: f.seek(n, os.SEEK_CUR))
    return _index(stream, size, path, lambda n: _skip(stream, n, path))


def _skip(stream, n, path):
    """Read `n` bytes of a sequential `stream` and drop them."""
    while n > 0:
        chunk = stream.read(min(n, 1 << 20))
        if not chunk:
            raise RecordError(f"{path} is truncated (a record runs past the end of the file).")
        n -= len(chunk)


def _index(f, size, path, skip):
    out = []
    pos = 0
    while pos < size:
        header = f.read(HEADER)
        if len(header) < HEADER:
            raise RecordError(f"{path} is truncated at byte {pos} (not a complete TFRecord file).")
        length = _length(header, path, pos)
        if length > size - pos - HEADER - FOOTER:
            raise RecordError(
                f"{path}: the TFRecord header at byte {pos} gives a record of {length} "
                f"bytes, past the end of the file ({size} bytes): the file is damaged or "
                "truncated (prepare or download it again)."
            )
        out.append((pos + HEADER, length))
        pos += HEADER + length + FOOTER
        if pos < size:
            skip(length + FOOTER)
    if pos != size:
        raise RecordError(f"{path} is truncated (a record runs past the end of the file).")
    return out


def read(path, offset, length, read_range=None):
    """The `length` data bytes at `offset` (as `index` gave them), both checksums checked.
    `read_range(path, offset, n)`: how to read `n` bytes at `offset` of `path` (default: a
    local file)."""
    if read_range is None:
        read_range = _read_local
    record = read_range(path, offset - HEADER, HEADER + length + FOOTER)
    if len(record) != HEADER + length + FOOTER:
        raise RecordError(f"{path}: the record at byte {offset} runs past the end of the file.")
    if _length(record[:HEADER], path, offset - HEADER) != length:
        raise RecordError(
            f"{path}: the record at byte {offset} is no longer {length} bytes long (the file "
            "changed since it was indexed)."
        )
    data = record[HEADER:-FOOTER]
    if masked_crc32c(data) != struct.unpack("<I", record[-FOOTER:])[0]:
        raise RecordError(
            f"{path}: the record at byte {offset} fails its CRC32C check (the file is damaged: "
            "prepare or download it again)."
        )
    return data


def _read_local(path, offset, n):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(n)


def parse_example(data):
    """A serialized tf.train.Example -> {key: list of bytes, floats or ints}."""
    example = Example()
    try:
        example.ParseFromString(data)
    except message.DecodeError as exc:
        raise ValueError(str(exc) or "malformed protobuf") from None
    features = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        features[key] = list(getattr(feature, kind).value) if kind else []
    return features
