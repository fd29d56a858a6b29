"""A TFRecord header whose (checksummed) length runs past the file: one DataError naming
the file and the byte, however large the length."""

import struct

import pytest

from hrnet_eval.data import DataError, load_dataset
from hrnet_eval.tfrecord import index, masked_crc32c

NAME = "imagenet2012-validation.tfrecord-00000-of-00001"


def record(data, length=None):
    """One TFRecord record of `data`; its header may claim another `length` (valid CRC)."""
    header = struct.pack("<Q", len(data) if length is None else length)
    return (
        header
        + struct.pack("<I", masked_crc32c(header))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


@pytest.mark.parametrize("length", [2**62, 2**64 - 1, 2**31, 29])
def test_length_past_the_end_is_named(tmp_path, length):
    good = record(b"x" * 16)
    path = tmp_path / NAME
    path.write_bytes(good + record(b"y" * 12, length=length))
    with pytest.raises(DataError) as caught:
        load_dataset(tmp_path)
    assert str(caught.value) == (
        f"{path}: the TFRecord header at byte {len(good)} gives a record of {length} bytes, "
        f"past the end of the file ({path.stat().st_size} bytes): the file is damaged or "
        "truncated (prepare or download it again)."
    )


def test_lengths_that_fit_are_indexed(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(record(b"x" * 16) + record(b""))
    assert index(path) == [(12, 16), (12 + 16 + 4 + 12, 0)]
