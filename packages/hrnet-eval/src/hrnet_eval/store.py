"""Finished shards on disk: OUTPUT/shards/<model>/<start>-<end>.json, written atomically.

A shard file is reused only if its key (model, range, data fingerprint,
weights identity, backend) equals the key of the unit being planned.
"""

import dataclasses
import json
from pathlib import Path

from hrnet_keras.files import atomic_write


@dataclasses.dataclass(frozen=True)
class Unit:
    """One work unit: images [start, end) of the data set under one model."""

    model: str
    start: int
    end: int

    @property
    def shard_id(self):
        return f"{self.start:08d}-{self.end:08d}"

    @property
    def size(self):
        return self.end - self.start


class ShardStore:
    """Reads and writes finished shards under `root`/shards."""

    def __init__(self, root):
        self.root = Path(root) / "shards"

    def path(self, unit):
        return self.root / unit.model / f"{unit.shard_id}.json"

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
        record = {"model": unit.model, "start": unit.start, "end": unit.end, "key": key, **result}
        with atomic_write(self.path(unit)) as tmp:
            tmp.write_text(json.dumps(record, separators=(",", ":")))
        return record
