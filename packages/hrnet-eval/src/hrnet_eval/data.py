"""ImageNet-1k validation layouts -> an ordered list of `Item`s; shards of it.

Layouts read (see `load_dataset`):
  class folders      val/n01440764/*.JPEG, one folder per wnid
  flat folder        ILSVRC2012_val_00000001.JPEG ... + a labels file
  tfds manual_dir    a folder holding ILSVRC2012_img_val.tar (or the .tar itself)
  tfds data_dir      a prepared tensorflow-datasets imagenet2012 (tfrecord files)

Class indices follow the sorted-synset order of the checkpoints
(`hrnet_keras/imagenet_classes.json`, the same wnids as tfds' labels.txt).
"""

import dataclasses
import hashlib
import importlib.util
import os
import re
import tarfile
from pathlib import Path

from hrnet_keras.preprocessing import imagenet_classes

from hrnet_eval import tfrecord
from hrnet_eval.errors import EvalError

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
FLAT_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$", re.IGNORECASE)
WNID = re.compile(r"^n\d{8}$")
VAL_TAR = "ILSVRC2012_img_val.tar"
TFDS_NAME = "imagenet2012"
TFRECORD_SPLIT = re.compile(r"^imagenet2012-validation\.tfrecord-\d{5}-of-\d{5}$")

# Where a label comes from: the layout (an index), or the tfrecord example itself.
LABEL_IN_RECORD = -1


class DataError(EvalError, ValueError):
    """The data set cannot be read as asked; the message says what to fix."""


@dataclasses.dataclass(frozen=True)
class Item:
    """One validation image: where its bytes are and its class index.

    kind "file": `source` is the image file. kind "tar" / "tfrecord": the bytes
    are `length` bytes at `offset` in the container file `source`; `name` is the
    member's name (a tfrecord item's name is filled in from the record).
    """

    name: str
    label: int
    source: str
    kind: str = "file"
    offset: int = 0
    length: int = 0

    @property
    def where(self):
        """The file (and member) to name in messages."""
        if self.kind == "file":
            return self.source
        return f"{self.source}[{self.name or f'record at byte {self.offset}'}]"


@dataclasses.dataclass(frozen=True)
class Dataset:
    """The ordered items of one data set, with how they were found."""

    items: tuple
    layout: str
    root: str
    notes: tuple = ()

    def __len__(self):
        return len(self.items)

    def fingerprint(self, start=0, end=None):
        """sha1 over (name, label, source, offset) of items[start:end]."""
        digest = hashlib.sha1()
        for item in self.items[start:end]:
            digest.update(f"{item.name}\t{item.label}\t{item.source}\t{item.offset}\n".encode())
        return digest.hexdigest()


def imagenet_wnids():
    """The 1000 wnids in checkpoint (class-index) order."""
    return [wnid for wnid, _ in imagenet_classes()]


def tfds_labels_file():
    """tensorflow-datasets' imagenet2012 validation_labels.txt (found without importing tfds)."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0], "datasets", TFDS_NAME, "validation_labels.txt")
    return path if path.is_file() else None


def shards(total, shard_size):
    """Contiguous (start, end) ranges of at most `shard_size` covering range(total)."""
    if shard_size < 1:
        raise ValueError(f"shard size must be at least 1, got {shard_size}")
    return [(start, min(start + shard_size, total)) for start in range(0, total, shard_size)]


def load_dataset(path, *, labels_file=None, limit=None):
    """Find the layout at `path` and list its images in order (the first `limit`)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(
            f"Data path {path} does not exist: give --data the ImageNet validation folder "
            "(class folders, flat ILSVRC2012_val_*.JPEG files, or a tensorflow-datasets "
            "data_dir / manual_dir)."
        )
    if labels_file is not None and not Path(labels_file).is_file():
        raise DataError(f"Labels file {labels_file} does not exist.")
    dataset = _detect(path.resolve(), labels_file)
    if not dataset.items:
        raise DataError(f"No validation images found in {path} ({dataset.layout} layout).")
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be at least 1, got {limit}.")
        dataset = dataclasses.replace(dataset, items=dataset.items[:limit])
    return dataset


def _detect(path, labels_file):
    if path.is_file():
        if path.name.endswith(".tar"):
            return _from_tar(path, labels_file)
        raise DataError(f"{path} is a file; --data takes a folder or {VAL_TAR}.")
    if (path / VAL_TAR).is_file():
        return _from_tar(path / VAL_TAR, labels_file)
    tfrecords = _tfds_split_files(path)
    if tfrecords:
        if labels_file:
            raise DataError(
                "--labels does not apply to a tensorflow-datasets data_dir (labels are in the records)."
            )
        return _from_tfrecords(tfrecords)
    entries = sorted(os.scandir(path), key=lambda e: e.name)
    dirs = [e for e in entries if e.is_dir()]
    images = [e for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)]
    if not images and any(WNID.match(d.name) for d in dirs):
        if labels_file:
            raise DataError(
                f"--labels does not apply to class folders: {path} holds one folder per wnid."
            )
        return _from_class_folders(path, dirs)
    if images:
        return _from_flat(path, images, labels_file)
    if not images and any(d.name == "val" for d in dirs):
        return _detect(path / "val", labels_file)
    raise DataError(
        f"No ImageNet validation layout in {path}: expected class folders (n01440764/...), "
        f"ILSVRC2012_val_*.JPEG files, {VAL_TAR}, or a prepared tensorflow-datasets "
        f"{TFDS_NAME} (its *.tfrecord-* files)."
    )


def _from_class_folders(root, dirs):
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    items = []
    for entry in dirs:
        if entry.name not in index:
            raise DataError(
                f"Folder {entry.path} is not an ImageNet-1k class: class folders must be "
                "named by wnid (n01440764 ... n15075141)."
            )
        for name in sorted(os.listdir(entry.path)):
            if name.lower().endswith(IMAGE_SUFFIXES):
                items.append(
                    Item(
                        name=f"{entry.name}/{name}",
                        label=index[entry.name],
                        source=os.path.join(entry.path, name),
                    )
                )
    return Dataset(tuple(items), "class folders", str(root))


def read_labels(labels_file):
    """Labels per validation image number, from either of the usual formats.

    One wnid or class index per line, line k for ILSVRC2012_val_0000000k (tfds'
    validation_labels.txt); or "FILE LABEL" lines (LABEL a wnid or an index).
    Returns {image number: class index}.
    """
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}

    def parse(token, line_no):
        if token in index:
            return index[token]
        if token.isdigit() and int(token) < len(index):
            return int(token)
        raise DataError(
            f"{labels_file} line {line_no}: {token!r} is neither an ImageNet-1k wnid "
            "nor a class index 0-999."
        )

    labels = {}
    with open(labels_file) as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) == 1:
                labels[line_no] = parse(fields[0], line_no)
            elif len(fields) == 2:
                match = FLAT_NAME.match(os.path.basename(fields[0]))
                if not match:
                    raise DataError(
                        f"{labels_file} line {line_no}: {fields[0]!r} is not an "
                        "ILSVRC2012_val_NNNNNNNN.JPEG name."
                    )
                labels[int(match.group(1))] = parse(fields[1], line_no)
            else:
                raise DataError(
                    f"{labels_file} line {line_no}: expected 'LABEL' or 'FILE LABEL', got {line.strip()!r}."
                )
    if not labels:
        raise DataError(f"Labels file {labels_file} is empty.")
    return labels


def _numbered_labels(names, labels_file, where):
    """Class index of each ILSVRC2012_val_NNNNNNNN name, from the labels file."""
    labels_file = labels_file or tfds_labels_file()
    if labels_file is None:
        raise DataError(
            f"{where} holds flat ILSVRC2012_val_* images but no labels file was found: "
            "pass --labels (tensorflow-datasets' imagenet2012/validation_labels.txt or "
            "'FILE LABEL' lines), or install tensorflow-datasets."
        )
    labels = read_labels(labels_file)
    out = []
    for name in names:
        match = FLAT_NAME.match(os.path.basename(name))
        if not match:
            raise DataError(
                f"{os.path.join(where, name)} is not named ILSVRC2012_val_NNNNNNNN.JPEG, so "
                f"{labels_file} cannot label it; use class folders for other names."
            )
        number = int(match.group(1))
        if number not in labels:
            raise DataError(
                f"Labels do not match the files: {labels_file} has no label for "
                f"{name} (image number {number}; it labels {len(labels)} images)."
            )
        out.append(labels[number])
    notes = ()
    if len(names) != len(labels):
        notes = (f"{labels_file} labels {len(labels)} images; {where} holds {len(names)}.",)
    return out, notes


def _from_flat(root, images, labels_file):
    names = [e.name for e in images]
    labels, notes = _numbered_labels(names, labels_file, str(root))
    items = tuple(
        Item(name=name, label=label, source=os.path.join(root, name))
        for name, label in zip(names, labels)
    )
    return Dataset(items, "flat", str(root), notes)


def _from_tar(tar_path, labels_file):
    members = []
    try:
        with tarfile.open(tar_path, "r:") as tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    members.append((os.path.basename(member.name), member.offset_data, member.size))
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"Cannot read {tar_path} as a tar archive: {exc}") from None
    members.sort()
    labels, notes = _numbered_labels([m[0] for m in members], labels_file, str(tar_path))
    items = tuple(
        Item(name=name, label=label, source=str(tar_path), kind="tar", offset=offset, length=size)
        for (name, offset, size), label in zip(members, labels)
    )
    return Dataset(items, "tfds manual_dir (tar)", str(tar_path), notes)


def _tfds_split_files(path):
    """The validation tfrecord files of a prepared tfds imagenet2012, newest version."""
    base = path / TFDS_NAME if (path / TFDS_NAME).is_dir() else path
    versions = [d for d in base.iterdir() if d.is_dir() and re.match(r"^\d+\.\d+\.\d+$", d.name)]
    versions.sort(key=lambda d: tuple(int(p) for p in d.name.split(".")))
    candidates = [path] + versions[::-1]
    for folder in candidates:
        files = sorted(f for f in folder.iterdir() if f.is_file() and TFRECORD_SPLIT.match(f.name))
        if files:
            return files
    return []


def _from_tfrecords(files):
    items = []
    for file in files:
        for offset, length in tfrecord_index(file):
            items.append(
                Item(
                    name="",
                    label=LABEL_IN_RECORD,
                    source=str(file),
                    kind="tfrecord",
                    offset=offset,
                    length=length,
                )
            )
    return Dataset(tuple(items), "tfds data_dir", str(files[0].parent))


def tfrecord_index(path):
    """(offset, length) of each record's data in a TFRecord file (headers only, checked)."""
    try:
        return tfrecord.index(path)
    except tfrecord.RecordError as exc:
        raise DataError(str(exc)) from None
