"""Finished shards: what a worker returns for one, and their files on disk.

A worker returns a `ScoredShard` (per-row `RowCounts` beside the shard's labels,
names and digests); each row's part is stored as
OUTPUT/shards/<model>/<start>-<end>.json, written atomically, with the fields of
`ScoredShard.record`. A shard file is reused only if its key (record format,
data fingerprint, file stamp, weights identity, backend, preprocessing) equals
the key of the unit being planned, its `sha256` (over the canonical record, `record_sha256`)
is that of its contents, and its counts are those its own top-5 classes and labels give
(`recount`): a record edited on disk is scored again, the log naming it.
"""

import dataclasses
import hashlib
import json
from pathlib import Path

from hrnet_keras.files import atomic_write

# 3: a sha256 over the canonical record; 2: counts named top1_hits / top5_hits (1: top1 / top5)
RECORD_FORMAT = 3
TOP_K = 5


@dataclasses.dataclass(frozen=True)
class RowCounts:
    """One row's counts on one shard: hits among `images`, worker seconds, each image's
    top-5 classes, and the names of the images whose logits were not all finite (such a
    shard must not be counted)."""

    images: int
    top1_hits: int
    top5_hits: int
    seconds: float
    top5_classes: list
    nonfinite: list


@dataclasses.dataclass(frozen=True)
class ScoredShard:
    """A worker's answer for one shard: {row: RowCounts}, and what the rows share (the
    images' labels and names, those skipped, every item's digest, the worker, the bytes of
    its images and how many of them came from another node)."""

    rows: dict
    labels: list
    names: list
    skipped: list
    digests: list
    worker: dict
    image_bytes: int = 0  # the decoded images the worker read
    moved_bytes: int = 0  # of which decoded on another node than the worker's

    def record(self, row):
        """What the shard store keeps of `row`'s part (JSON fields)."""
        counts = dataclasses.asdict(self.rows[row])
        del counts["nonfinite"]  # a stored shard has none: its row would have stopped
        shared = {f: getattr(self, f) for f in ("labels", "names", "skipped", "digests")}
        return {**counts, **shared, "worker": self.worker}


class ShardStore:
    """Reads and writes finished shards under `root`/shards."""

    def __init__(self, root):
        self.root = Path(root) / "shards"

    def path(self, unit):
        """Where `unit` (a `plan.Unit`) is stored."""
        return self.root / unit.row / f"{unit.shard.id}.json"

    def lookup(self, unit, key):
        """(record, None) if `unit` was stored under `key` and the record is intact; else
        (None, why): None for no file, "unreadable", the first field of `key` that differs,
        or (a record that does not hold together) the file and what is wrong with it."""
        path = self.path(unit)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError):
            return None, "unreadable"  # half-written by something else: redo it
        stored = record.get("key") if isinstance(record, dict) else None
        if stored != key:
            stored = stored if isinstance(stored, dict) else {}
            return None, next((f for f in key if stored.get(f) != key[f]), "unreadable")
        wrong = damage(record, unit)
        if wrong:
            return None, f"{path} {wrong}"
        return record, None

    def save(self, unit, key, result):
        """Write the record of a finished unit atomically, with its `sha256`; returns it."""
        shard = unit.shard
        record = {"model": unit.row, "start": shard.start, "end": shard.end, "key": key, **result}
        record["sha256"] = record_sha256(record)
        with atomic_write(self.path(unit)) as tmp:
            tmp.write_text(json.dumps(record, separators=(",", ":")))
        return record


def record_sha256(record):
    """sha256 of `record`'s canonical JSON (keys sorted, no spaces), its "sha256" left out."""
    fields = {k: v for k, v in record.items() if k != "sha256"}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def recount(top5_classes, labels):
    """(top-1 hits, top-5 hits) that per-image top-5 classes give against `labels`."""
    top1 = sum(int(t[0] == y) for t, y in zip(top5_classes, labels))
    top5 = sum(int(y in t) for t, y in zip(top5_classes, labels))
    return top1, top5


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def damage(record, unit):
    """What is wrong with a stored `record` of `unit` whose key matched (its sha256, its
    shape, its counts against its own top-5 classes and labels), or None if nothing."""
    if record.get("sha256") != record_sha256(record):
        return "does not match its sha256 (edited or damaged on disk)"
    if (record.get("model"), record.get("start"), record.get("end")) != (
        unit.row,
        unit.shard.start,
        unit.shard.end,
    ):
        return "is the record of another row or range"
    fields = ("images", "top1_hits", "top5_hits", "top5_classes", "labels", "names", "skipped")
    values = [record.get(f) for f in fields]
    images, top1, top5, classes, labels, names, skipped = values
    if not (
        all(map(_is_int, (images, top1, top5))) and all(isinstance(v, list) for v in values[3:])
    ):
        return "lacks counts, top-5 classes, labels, names or skipped images"
    if not images == len(classes) == len(labels) == len(names):
        return (
            f"counts {images} images but holds {len(classes)} top-5 lists, {len(labels)} "
            f"labels, {len(names)} names"
        )
    if images + len(skipped) != unit.shard.size:
        return f"accounts for {images + len(skipped)} of its {unit.shard.size} images"
    if not all(
        isinstance(t, list) and len(t) == TOP_K and all(map(_is_int, t)) for t in classes
    ) or not all(map(_is_int, labels)):
        return "holds top-5 classes or labels that are not lists of 5 class indices"
    fresh = recount(classes, labels)
    if (top1, top5) != fresh:
        return (
            f"counts top1_hits {top1}, top5_hits {top5} where its top-5 classes and labels "
            f"give {fresh[0]}, {fresh[1]}"
        )
    return None
