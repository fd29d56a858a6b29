"""A job's plan: its shards, the key each (row, shard) is stored under, what is reused.

A `Shard` is images [start, end) of the data set decoded one way (a row's `Decoding`);
a `Unit` is one row's work on one shard. `make_plan` cuts the data set into shards and
looks each unit up in the shard store under its key (the images' names, labels, sizes
and modification times, the record format, the backend, the row's weights and
preprocessing); `Plan.verify` then checks the reused records against their images'
bytes. The plan's `shards` maps each shard to the rows still to score it: what the
scheduler's `policy.Work` starts from.
"""

import collections
import dataclasses
import json
import typing

from hrnet_eval import resume
from hrnet_eval.data import shards
from hrnet_eval.images import TABLE, Decoding
from hrnet_eval.store import RECORD_FORMAT


class Shard(typing.NamedTuple):
    """Images [start, end) of the data set, decoded with `decoding`."""

    start: int
    end: int
    decoding: Decoding = TABLE

    @property
    def size(self):
        return self.end - self.start

    @property
    def id(self):
        """Its name in the shard store: "00000000-00000500"."""
        return f"{self.start:08d}-{self.end:08d}"

    def __str__(self):
        return f"shard {self.id}"


class Unit(typing.NamedTuple):
    """One row's work on one shard."""

    row: str
    shard: Shard


def shard_key(dataset, start, end, backend):
    """What a stored shard must have been made from to be reused, but the row's weights
    and preprocessing (`Plan.key` adds them)."""
    return {
        "format": RECORD_FORMAT,
        "data": dataset.fingerprint(start, end),
        "files": dataset.content_stamp(start, end),
        "backend": backend,
    }


def preprocessing_key(spec):
    """A row's test pipeline as a stored key holds it (JSON turns tuples into lists)."""
    return json.loads(json.dumps(dataclasses.asdict(spec.preset.pipeline)))


REASONS = {  # key field that differs -> why a stored shard is not reused
    "format": "an older record format",
    "data": "other images or labels",
    "files": "images changed on disk",
    "weights": "other weights",
    "backend": "another backend",
    "preprocessing": "another preprocessing",
}


@dataclasses.dataclass(frozen=True)
class Plan:
    """What is stored and what is left: `shards` maps each shard with work left to its
    rows (in row order), `done` each row to its reused records, `redo` counts why stored
    shards were not reused; `hashed`: the images whose bytes `verify` checked."""

    rows: tuple
    items: list  # the data set's items
    shards: dict  # Shard -> (rows still to score it), in data order
    done: dict  # row -> (reused records)
    redo: collections.Counter
    keys: dict  # (start, end) -> its `shard_key`
    rows_keys: dict  # row -> {"weights": ModelSpec.key, "preprocessing": its pipeline}
    decodings: dict  # row -> Decoding
    hashed: int = 0

    def key(self, unit):
        """The key `unit` is stored under."""
        return {**self.keys[unit.shard.start, unit.shard.end], **self.rows_keys[unit.row]}

    @property
    def units_left(self):
        return sum(map(len, self.shards.values()))

    def rows_left(self):
        """The rows with work left, in row order."""
        left = {row for rows in self.shards.values() for row in rows}
        return [row for row in self.rows if row in left]

    def verify(self, hasher=resume.fresh_digests):
        """This plan once the reused records are checked against their images' bytes
        (`hasher(items)` gives their digests): a record whose bytes differ, or that has no
        digests, is scored again, its reason counted in `redo`."""
        stale, hashed = resume.stale(self.items, self.done, hasher=hasher)
        done = {
            row: tuple(r for r in records if (row, r["start"], r["end"]) not in stale)
            for row, records in self.done.items()
        }
        left = collections.defaultdict(set)
        for shard, rows in self.shards.items():
            left[shard].update(rows)
        for row, start, end in stale:
            left[Shard(start, end, self.decodings[row])].add(row)
        return dataclasses.replace(
            self,
            shards=self._ordered(left),
            done=done,
            redo=self.redo + collections.Counter(stale.values()),
            hashed=hashed,
        )

    def _ordered(self, left):
        """{Shard: rows} in data order, rows in row order."""
        return {
            shard: tuple(row for row in self.rows if row in left[shard])
            for shard in sorted(left)
            if left[shard]
        }


def make_plan(dataset, store, specs, *, backend, shard_size, skip_corrupt, reuse=True):
    """The `Plan` of evaluating every row of `specs` ({row: ModelSpec}, in order) on
    `dataset` in shards of `shard_size`, reusing what `store` holds under the same key
    (unless `reuse` is false)."""
    keys = {
        (start, end): shard_key(dataset, start, end, backend)
        for start, end in shards(len(dataset), shard_size)
    }  # each image file is stat'ed once, whatever the number of rows
    plan = Plan(
        rows=tuple(specs),
        items=dataset.items,
        shards={},
        done={},
        redo=collections.Counter(),
        keys=keys,
        rows_keys={
            row: {"weights": spec.key, "preprocessing": preprocessing_key(spec)}
            for row, spec in specs.items()
        },
        decodings={row: Decoding.of(spec.preset.pipeline) for row, spec in specs.items()},
    )
    left, done = collections.defaultdict(set), {row: [] for row in specs}
    for row in specs:
        for start, end in keys:
            unit = Unit(row, Shard(start, end, plan.decodings[row]))
            record, mismatch = store.lookup(unit, plan.key(unit)) if reuse else (None, None)
            if record is not None and record["skipped"] and not skip_corrupt:
                record, mismatch = None, "it skipped images (no --skip-corrupt now)"
            if record is not None:
                done[row].append(record)
            else:
                left[unit.shard].add(row)
                if mismatch:
                    plan.redo[REASONS.get(mismatch, mismatch)] += 1
    done = {row: tuple(records) for row, records in done.items()}
    return dataclasses.replace(plan, shards=plan._ordered(left), done=done)
