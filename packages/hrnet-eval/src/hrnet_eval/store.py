"""Finished shards: what a worker returns for one, and their files on disk.

A worker returns a `ScoredShard` (per-row `RowCounts` beside the shard's labels,
names and digests); each row's part is stored as
OUTPUT/shards/<model>/<start>-<end>.json, written atomically, with the fields of
`ScoredShard.record`. A shard file is reused only if its key (record format,
data fingerprint, file stamp, weights identity, backend, preprocessing) equals
the key of the unit being planned.
"""

import dataclasses
import json
from pathlib import Path

from hrnet_keras.files import atomic_write

RECORD_FORMAT = 2  # 2: counts named top1_hits / top5_hits (1: top1 / top5)


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
    images' labels and names, those skipped, every item's digest, the worker)."""

    rows: dict
    labels: list
    names: list
    skipped: list
    digests: list
    worker: dict

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
        """(record, None) if `unit` was stored under `key`; else (None, why): None for no
        file, "unreadable", or the first field of `key` that differs."""
        path = self.path(unit)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError):
            return None, "unreadable"  # half-written by something else: redo it
        stored = record.get("key") if isinstance(record, dict) else None
        if stored == key:
            return record, None
        stored = stored if isinstance(stored, dict) else {}
        return None, next((f for f in key if stored.get(f) != key[f]), "unreadable")

    def save(self, unit, key, result):
        """Write the record of a finished unit atomically; returns it."""
        shard = unit.shard
        record = {"model": unit.row, "start": shard.start, "end": shard.end, "key": key, **result}
        with atomic_write(self.path(unit)) as tmp:
            tmp.write_text(json.dumps(record, separators=(",", ":")))
        return record
