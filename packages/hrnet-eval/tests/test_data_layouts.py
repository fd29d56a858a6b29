"""The dataset layouts people have give the same labelled images, in a fixed order."""

import os
import shutil
import struct
import subprocess
import sys
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image

from hrnet_eval.data import (
    DataError,
    Item,
    load_dataset,
    read_labels,
    shards,
    tfds_labels_file,
)
from hrnet_eval.images import ImageError, load
from hrnet_eval.tfrecord import parse_example
from hrnet_keras.preprocessing import imagenet_classes
from ray_head import python_env

WNIDS = [wnid for wnid, _ in imagenet_classes()]


def tfds_truth(n):
    """Class indices of images 1..n from tensorflow-datasets' validation_labels.txt."""
    lines = tfds_labels_file().read_text().split()
    return [WNIDS.index(w) for w in lines[:n]]


def decoded(dataset):
    """{image name: (label, pixels)} through the workers' loader."""
    out = {}
    for item in dataset.items:
        image, label, name = load(item)
        out[os.path.basename(name)] = (label, image)
    return out


@pytest.fixture(scope="module")
def layouts(photo_dir, tmp_path_factory):
    """The photos as class folders, flat (+ labels file), and a tfds manual_dir tar, labelled
    with the real ImageNet ground truth of images 1..24 (tfds' validation_labels.txt)."""
    root = tmp_path_factory.mktemp("layouts")
    names = sorted(os.listdir(photo_dir))
    truth = tfds_truth(len(names))
    for name, label in zip(names, truth):
        (root / "imagenet" / "val" / WNIDS[label]).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo_dir / name, root / "imagenet" / "val" / WNIDS[label] / name)
    shutil.copytree(photo_dir, root / "flat")
    (root / "manual").mkdir()
    with tarfile.open(root / "manual" / "ILSVRC2012_img_val.tar", "w") as tar:
        for name in names:
            tar.add(photo_dir / name, arcname=name)
    return root, names, truth


def test_class_folders_flat_and_tar_agree(layouts):
    root, names, truth = layouts
    folders = load_dataset(root / "imagenet")  # finds val/ inside
    flat = load_dataset(root / "flat")  # labels: tfds' validation_labels.txt
    tar = load_dataset(root / "manual")
    assert (folders.layout, flat.layout, tar.layout) == (
        "class folders",
        "flat",
        "tfds manual_dir (tar)",
    )
    assert [i.name for i in flat.items] == names == [i.name for i in tar.items]
    assert [i.label for i in flat.items] == truth == [i.label for i in tar.items]
    # Class folders: sorted by wnid (= class index), then file name.
    assert [i.label for i in folders.items] == sorted(truth)
    assert dict((os.path.basename(i.name), i.label) for i in folders.items) == dict(
        zip(names, truth)
    )
    a, b, c = decoded(folders), decoded(flat), decoded(tar)
    for name in names:
        assert a[name][0] == b[name][0] == c[name][0]
        assert np.array_equal(a[name][1], b[name][1]) and np.array_equal(a[name][1], c[name][1])
    assert a[names[0]][1].shape == (224, 224, 3) and a[names[0]][1].dtype == np.uint8
    assert "labels 50000 images" in flat.notes[0]


@pytest.fixture(scope="module")
def tfds_dir(layouts, tmp_path_factory):
    """tensorflow-datasets' own builder prepares imagenet2012 from the tar (TensorFlow writes
    the records and their checksums)."""
    root, _, _ = layouts
    data_dir = tmp_path_factory.mktemp("tfds")
    script = (
        "import sys, tensorflow_datasets as tfds\n"
        "from tensorflow_datasets.core.utils import gcs_utils\n"
        "gcs_utils._is_gcs_disabled = True  # offline\n"
        "b = tfds.builder('imagenet2012', data_dir=sys.argv[1])\n"
        "b.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=sys.argv[2]))\n"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(data_dir), str(root / "manual")],
        check=True,
        env=python_env(),
        capture_output=True,
        timeout=300,
    )
    return data_dir


def test_prepared_tfds_data_dir_matches_the_tar(layouts, tfds_dir):
    """The prepared records (read without TensorFlow) hold the same images and labels."""
    root, names, truth = layouts
    prepared = load_dataset(tfds_dir)
    assert prepared.layout == "tfds data_dir" and len(prepared) == len(names)
    from_tar = decoded(load_dataset(root / "manual"))
    from_records = decoded(prepared)
    assert from_records.keys() == set(names)
    for name, (label, pixels) in from_records.items():
        expected_label, expected_pixels = from_tar[name]
        assert label == expected_label == truth[names.index(name)]
        assert np.array_equal(pixels, expected_pixels)


def _damaged_copy(tfds_dir, dst, position_of, xor=0x01):
    """A copy of the prepared records in `dst` with one byte flipped; its items."""
    (record_file,) = (p for p in tfds_dir.rglob("*.tfrecord-*") if p.is_file())
    copy = dst / record_file.name
    shutil.copyfile(record_file, copy)
    items = load_dataset(dst).items
    data = bytearray(copy.read_bytes())
    data[position_of(items[2])] ^= xor
    copy.write_bytes(bytes(data))
    return copy, items


def test_corrupt_record_byte_is_named(tfds_dir, tmp_path):
    """A flipped byte in a record's data: that record fails its CRC32C check, named by file
    and byte; the others still load."""
    copy, items = _damaged_copy(tfds_dir, tmp_path, lambda i: i.offset + i.length // 2)
    with pytest.raises(
        ImageError, match=f"{copy}: the record at byte {items[2].offset} fails its CRC32C check"
    ):
        load(items[2])
    assert load(items[1])[0].shape == load(items[3])[0].shape == (224, 224, 3)


def test_bad_crc_is_named(tfds_dir, tmp_path):
    """Intact data under a wrong stored checksum is refused too; a wrong header checksum
    stops the data set's indexing, naming the file and the header's byte."""
    data_crc = tmp_path / "data_crc"
    data_crc.mkdir()
    copy, items = _damaged_copy(tfds_dir, data_crc, lambda i: i.offset + i.length)
    with pytest.raises(
        ImageError, match=f"{copy}: the record at byte {items[2].offset} fails its CRC32C check"
    ):
        load(items[2])
    header_crc = tmp_path / "header_crc"
    header_crc.mkdir()
    copy, items = _damaged_copy(tfds_dir, header_crc, lambda i: i.offset - 1)
    with pytest.raises(DataError) as info:
        load_dataset(header_crc)
    assert str(info.value) == (
        f"{copy}: the TFRecord header at byte {items[2].offset - 12} fails its CRC32C check "
        "(the file is damaged: prepare or download it again)."
    )


def test_labels_file_formats(layouts, tmp_path):
    root, names, truth = layouts
    wnid_lines = tmp_path / "wnids.txt"
    wnid_lines.write_text("".join(WNIDS[(y + 1) % 1000] + "\n" for y in truth))
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("".join(f"{n} {(y + 2) % 1000}\n" for n, y in zip(names, truth)))
    assert [i.label for i in load_dataset(root / "flat", labels_file=wnid_lines).items] == [
        (y + 1) % 1000 for y in truth
    ]
    assert [i.label for i in load_dataset(root / "flat", labels_file=pairs).items] == [
        (y + 2) % 1000 for y in truth
    ]
    assert read_labels(pairs)[24] == (truth[23] + 2) % 1000


def test_limit_and_shards(layouts):
    root, names, _ = layouts
    dataset = load_dataset(root / "flat", limit=5)
    assert [i.name for i in dataset.items] == names[:5]
    assert shards(24, 10) == [(0, 10), (10, 20), (20, 24)]
    assert shards(24, 8) == [(0, 8), (8, 16), (16, 24)]
    # A shard's fingerprint depends on its images only.
    full = load_dataset(root / "flat")
    assert full.fingerprint(0, 5) == dataset.fingerprint() != full.fingerprint(1, 6)


def test_bad_layouts_fail_naming_the_problem(layouts, tmp_path):
    root, names, truth = layouts
    with pytest.raises(DataError, match=f"Data path {tmp_path / 'nope'} does not exist"):
        load_dataset(tmp_path / "nope")

    short = tmp_path / "short.txt"
    short.write_text("".join(WNIDS[y] + "\n" for y in truth[:10]))
    with pytest.raises(
        DataError, match="Labels do not match the files: .* ILSVRC2012_val_00000011"
    ):
        load_dataset(root / "flat", labels_file=short)

    bad_wnid = tmp_path / "bad.txt"
    bad_wnid.write_text("n01440764\nn99999999\n")
    with pytest.raises(DataError, match=r"bad.txt line 2: 'n99999999' is neither"):
        load_dataset(root / "flat", labels_file=bad_wnid)

    unknown = tmp_path / "unknown"
    shutil.copytree(root / "imagenet" / "val", unknown)
    (unknown / "n00000000").mkdir()
    with pytest.raises(DataError, match="n00000000 is not an ImageNet-1k class"):
        load_dataset(unknown)

    odd = tmp_path / "odd"
    shutil.copytree(root / "flat", odd)
    shutil.copyfile(odd / names[0], odd / "holiday.jpg")
    with pytest.raises(DataError, match="holiday.jpg is not named ILSVRC2012_val_NNNNNNNN.JPEG"):
        load_dataset(odd)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="No ImageNet validation layout in"):
        load_dataset(empty)


def test_corrupt_images_raise_naming_the_file(layouts, tmp_path):
    root, names, _ = layouts
    flat = tmp_path / "flat"
    shutil.copytree(root / "flat", flat)
    (flat / names[3]).write_bytes((flat / names[3]).read_bytes()[:500])  # truncated
    (flat / names[4]).write_bytes(b"not an image at all")
    items = load_dataset(flat).items
    for item in items[3:5]:
        with pytest.raises(ImageError, match=f"Cannot decode image {item.source}"):
            load(item)
    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar", "w") as tar:
        tar.add(flat / names[4], arcname=names[4])
    (item,) = load_dataset(tmp_path / "ILSVRC2012_img_val.tar").items
    with pytest.raises(ImageError, match=r"ILSVRC2012_img_val.tar\[ILSVRC2012_val_00000005.JPEG\]"):
        load(item)


def test_bombs_and_extreme_aspect_ratios_are_image_errors(tmp_path):
    """Refused from the header before any resize, named, as ImageErrors (so --skip-corrupt
    skips them): a PNG header claiming 100000x100000 pixels, a 1x8000 JPEG, the JPEG in a tar."""
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (1, 1)).save(bomb)
    data = bytearray(bomb.read_bytes())
    data[16:24] = struct.pack(">II", 100_000, 100_000)  # IHDR width, height; then its CRC
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    bomb.write_bytes(bytes(data))
    strip = tmp_path / "ILSVRC2012_val_00000001.JPEG"
    Image.new("RGB", (1, 8000), (9, 9, 9)).save(strip)
    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar", "w") as tar:
        tar.add(strip, arcname=strip.name)
    (in_tar,) = load_dataset(tmp_path / "ILSVRC2012_img_val.tar").items
    cases = [
        (Item(name=bomb.name, label=0, source=str(bomb)), f"{bomb}: Image size"),
        (Item(name=strip.name, label=0, source=str(strip)), f"{strip}: 1x8000 pixels exceed"),
        (in_tar, rf"ILSVRC2012_img_val.tar\[{strip.name}\]: 1x8000 pixels exceed"),
    ]
    for item, message in cases:
        with pytest.raises(ImageError, match=f"^Refusing image .*{message}"):
            load(item)


def _len_field(number, payload):
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_example_parser_reads_the_wire_format():
    """tf.train.Example{features{"label": int64 [7, -1] (packed), "name": bytes ["x"]}}."""
    minus_one = b"\xff" * 9 + b"\x01"  # int64 -1 as a varint
    int64_list = _len_field(1, b"\x07" + minus_one)
    bytes_list = _len_field(1, b"x")
    entries = (
        _len_field(1, b"label") + _len_field(2, _len_field(3, int64_list)),
        _len_field(1, b"name") + _len_field(2, _len_field(1, bytes_list)),
    )
    features = b"".join(_len_field(1, entry) for entry in entries)
    assert parse_example(_len_field(1, features)) == {"label": [7, -1], "name": [b"x"]}
    with pytest.raises(ValueError):
        parse_example(_len_field(1, features)[:-3])
