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

from hrnet_eval import index_cache, storage, tfrecord
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
    # object URI -> size and modification time from the listing (object storage only)
    stamps: dict = dataclasses.field(default=None, compare=False, repr=False)

    def __len__(self):
        return len(self.items)

    def content_stamp(self, start=0, end=None):
        """sha1 over each image file's (or container's) size and modification time (ns) in
        items[start:end]: an image changed in place changes the stamp. Objects in object
        storage are stamped from the job's listing. Raises DataError for a missing file."""
        digest = hashlib.sha1()
        for source in dict.fromkeys(item.source for item in self.items[start:end]):
            if self.stamps and source in self.stamps:
                stamp = self.stamps[source]
            else:
                try:
                    stat = os.stat(source)
                except OSError as exc:
                    raise DataError(f"Cannot read {source}: {exc.strerror}.") from None
                stamp = f"{stat.st_size}\t{stat.st_mtime_ns}"
            digest.update(f"{source}\t{stamp}\n".encode())
        return digest.hexdigest()

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


def load_dataset(path, *, labels_file=None, limit=None, connect=None):
    """Find the layout at `path` (a local path, or an s3:// or gs:// URI) and list its
    images in order (the first `limit`).

    In object storage the listing is made here, once; the record index of a tar or of
    TFRecord files is read by one Ray task per file and cached (`index_cache`);
    `connect()`, when given, is called before the first such task if this process has
    not joined a Ray cluster yet.
    """
    if storage.is_uri(str(path)):
        path = str(path)
        why = storage.refusal(path)
        if why:
            raise DataError(f"--data {why}")
        tree = _Objects(connect)
        if tree.kind(path) is None:
            bucket = storage.bucket(path)
            if tree.kind(bucket) is None:
                raise DataError(
                    f"Bucket {bucket} does not exist or cannot be read with the credentials "
                    "of this environment."
                )
            raise DataError(f"Data path {path} does not exist: {_DATA_HINT}")
        dataset = _detect(tree, path, labels_file)
    else:
        path = Path(path).expanduser()
        if not path.exists():
            raise DataError(f"Data path {path} does not exist: {_DATA_HINT}")
        if labels_file is not None and not storage.is_uri(str(labels_file)):
            if not Path(labels_file).is_file():
                raise DataError(f"Labels file {labels_file} does not exist.")
        tree = _Files()
        dataset = _detect(tree, str(path.resolve()), labels_file)
    if not dataset.items:
        raise DataError(f"No validation images found in {path} ({dataset.layout} layout).")
    if limit is not None:
        if limit < 1:
            raise DataError(f"--limit must be at least 1, got {limit}.")
        dataset = dataclasses.replace(dataset, items=dataset.items[:limit])
    return dataset


_DATA_HINT = (
    "give --data the ImageNet validation folder "
    "(class folders, flat ILSVRC2012_val_*.JPEG files, or a tensorflow-datasets "
    "data_dir / manual_dir)."
)


class _Files:
    """The layouts' view of the local disk."""

    stamps = None

    @staticmethod
    def join(where, *names):
        return os.path.join(where, *names)

    @staticmethod
    def kind(where):
        return "file" if os.path.isfile(where) else "dir" if os.path.isdir(where) else None

    @staticmethod
    def listdir(where):
        """(sorted folder names, sorted file names) directly in `where`."""
        entries = sorted(os.scandir(where), key=lambda e: e.name)
        return [e.name for e in entries if e.is_dir()], [e.name for e in entries if e.is_file()]

    @staticmethod
    def class_files(root, wnids):
        """{wnid: sorted file names} of the class folders `wnids` in `root`."""
        return {wnid: sorted(os.listdir(os.path.join(root, wnid))) for wnid in wnids}

    @staticmethod
    def tar_members(tar_path):
        return tar_members(tar_path)

    @staticmethod
    def tfrecord_indexes(files):
        return [tfrecord_index(file) for file in files]


class _Objects:
    """The layouts' view of object storage: one listing per folder looked at, one
    recursive listing of class folders; containers indexed by Ray tasks, cached."""

    def __init__(self, connect=None):
        self.connect = connect
        self.stamps = {}  # object URI -> storage.stamp, of the objects listed
        self._listed = {}

    join = staticmethod(storage.join)

    def kind(self, where):
        parent, name = where.rstrip("/").rsplit("/", 1)
        if parent.endswith(":/"):  # the bucket itself
            try:
                return "dir" if storage.info(where).type.name == "Directory" else None
            except OSError:  # e.g. access denied
                return None
        dirs, files = self.listdir(parent)
        return "file" if name in files else "dir" if name in dirs else None

    def listdir(self, where):
        where = where.rstrip("/")
        if where not in self._listed:
            try:
                dirs, files = storage.listdir(where)
            except OSError as exc:
                raise DataError(f"Cannot list {where}: {exc}") from None
            for name, info in files.items():
                self.stamps[storage.join(where, name)] = storage.stamp(info)
            self._listed[where] = sorted(dirs), sorted(files)
        return self._listed[where]

    def class_files(self, root, wnids):
        try:
            objects = storage.walk(root)
        except OSError as exc:
            raise DataError(f"Cannot list {root}: {exc}") from None
        out = {wnid: [] for wnid in wnids}
        for relative, info in objects.items():
            wnid, _, name = relative.partition("/")
            if wnid in out and "/" not in name:
                out[wnid].append(name)
                self.stamps[storage.join(root, relative)] = storage.stamp(info)
        return {wnid: sorted(names) for wnid, names in out.items()}

    def tar_members(self, tar_path):
        (members,) = index_cache.indexes([(tar_path, "tar", self.stamps[tar_path])], self.connect)
        return [tuple(m) for m in members]

    def tfrecord_indexes(self, files):
        wanted = [(file, "tfrecord", self.stamps[file]) for file in files]
        return [[tuple(r) for r in rs] for rs in index_cache.indexes(wanted, self.connect)]


def _detect(tree, path, labels_file):
    kind = tree.kind(path)
    if kind == "file":
        if path.endswith(".tar"):
            return _from_tar(tree, path, labels_file)
        raise DataError(f"{path} is a file; --data takes a folder or {VAL_TAR}.")
    dirs, files = tree.listdir(path)
    if VAL_TAR in files:
        return _from_tar(tree, tree.join(path, VAL_TAR), labels_file)
    tfrecords = _tfds_split_files(tree, path)
    if tfrecords:
        if labels_file:
            raise DataError(
                "--labels does not apply to a tensorflow-datasets data_dir (labels are in the records)."
            )
        return _from_tfrecords(tree, tfrecords)
    images = [name for name in files if name.lower().endswith(IMAGE_SUFFIXES)]
    if not images and any(WNID.match(d) for d in dirs):
        if labels_file:
            raise DataError(
                f"--labels does not apply to class folders: {path} holds one folder per wnid."
            )
        return _from_class_folders(tree, path, dirs)
    if images:
        return _from_flat(tree, path, images, labels_file)
    if "val" in dirs:
        return _detect(tree, tree.join(path, "val"), labels_file)
    raise DataError(
        f"No ImageNet validation layout in {path}: expected class folders (n01440764/...), "
        f"ILSVRC2012_val_*.JPEG files, {VAL_TAR}, or a prepared tensorflow-datasets "
        f"{TFDS_NAME} (its *.tfrecord-* files)."
    )


def _from_class_folders(tree, root, dirs):
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    for name in dirs:
        if name not in index:
            raise DataError(
                f"Folder {tree.join(root, name)} is not an ImageNet-1k class: class folders "
                "must be named by wnid (n01440764 ... n15075141)."
            )
    items = []
    for wnid, names in tree.class_files(root, dirs).items():
        for name in names:
            if name.lower().endswith(IMAGE_SUFFIXES):
                items.append(
                    Item(
                        name=f"{wnid}/{name}", label=index[wnid], source=tree.join(root, wnid, name)
                    )
                )
    return Dataset(tuple(items), "class folders", root, stamps=tree.stamps)


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
    if storage.is_uri(str(labels_file)):
        try:
            lines = storage.read(str(labels_file)).decode().splitlines()
        except OSError as exc:
            raise DataError(f"Cannot read labels file {labels_file}: {exc}") from None
    else:
        with open(labels_file) as f:
            lines = f.read().splitlines()
    for line_no, line in enumerate(lines, start=1):
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


def _from_flat(tree, root, names, labels_file):
    labels, notes = _numbered_labels(names, labels_file, root)
    items = tuple(
        Item(name=name, label=label, source=tree.join(root, name))
        for name, label in zip(names, labels)
    )
    return Dataset(items, "flat", root, notes, stamps=tree.stamps)


def tar_members(tar_path, stream=None):
    """(base name, data offset, size) of each image member of a tar, sorted by name;
    `stream`: a sequential reader of it (an object in object storage)."""
    members = []
    try:
        if stream is None:
            tar = tarfile.open(tar_path, "r:")
        else:
            tar = tarfile.open(fileobj=stream, mode="r|")
        with tar:
            for member in tar:
                if member.isfile() and member.name.lower().endswith(IMAGE_SUFFIXES):
                    members.append((os.path.basename(member.name), member.offset_data, member.size))
    except (tarfile.TarError, OSError) as exc:
        raise DataError(f"Cannot read {tar_path} as a tar archive: {exc}") from None
    members.sort()
    return members


def _from_tar(tree, tar_path, labels_file):
    members = tree.tar_members(tar_path)
    labels, notes = _numbered_labels([m[0] for m in members], labels_file, tar_path)
    items = tuple(
        Item(name=name, label=label, source=tar_path, kind="tar", offset=offset, length=size)
        for (name, offset, size), label in zip(members, labels)
    )
    return Dataset(items, "tfds manual_dir (tar)", tar_path, notes, stamps=tree.stamps)


def _tfds_split_files(tree, path):
    """The validation tfrecord files of a prepared tfds imagenet2012, newest version."""
    dirs, _ = tree.listdir(path)
    base = tree.join(path, TFDS_NAME) if TFDS_NAME in dirs else path
    versions = [d for d in tree.listdir(base)[0] if re.match(r"^\d+\.\d+\.\d+$", d)]
    versions.sort(key=lambda d: tuple(int(p) for p in d.split(".")))
    candidates = [path] + [tree.join(base, v) for v in versions[::-1]]
    for folder in candidates:
        files = [tree.join(folder, f) for f in tree.listdir(folder)[1] if TFRECORD_SPLIT.match(f)]
        if files:
            return files
    return []


def _from_tfrecords(tree, files):
    items = []
    for file, records in zip(files, tree.tfrecord_indexes(files)):
        for offset, length in records:
            items.append(
                Item(
                    name="",
                    label=LABEL_IN_RECORD,
                    source=file,
                    kind="tfrecord",
                    offset=offset,
                    length=length,
                )
            )
    parent = os.path.dirname(files[0]) if tree.stamps is None else files[0].rsplit("/", 1)[0]
    return Dataset(tuple(items), "tfds data_dir", parent, stamps=tree.stamps)


def tfrecord_index(path, stream=None, size=None):
    """(offset, length) of each record's data in a TFRecord file (headers only, checked);
    `stream`, `size`: as `tfrecord.index`."""
    try:
        return tfrecord.index(path, stream, size)
    except tfrecord.RecordError as exc:
        raise DataError(str(exc)) from None
