"""What is left to do and who does it: the scheduler's decisions, apart from Ray.

A `plan.Shard` is images [start, end) decoded one way (the rows' `Decoding`): rows of
one decoding share it, a row with another pipeline waits for its own. `Work` holds, per
row, the shards it has still to be sent (in data order) and, per shard, the rows
waiting for it; a row that gives non-finite logits is stopped here. `choose_group`
says which row group a worker takes, `wanted` which shards the decode window should
hold, and `row_groups` how rows are split among workers.
"""

import bisect
import collections


def row_groups(rows, rows_per_worker):
    """The rows in groups of at most `rows_per_worker`, in order."""
    rows = list(rows)
    size = max(1, rows_per_worker or len(rows))
    return [tuple(rows[i : i + size]) for i in range(0, len(rows), size)]


class Work:
    """Shards still to be sent, per row ({row: [Shard]}), and rows per shard.

    `shards`: {Shard: rows to score it} (`plan.Plan.shards`)."""

    def __init__(self, shards):
        self.waiting = collections.defaultdict(set)
        self.todo = {}
        for key in sorted(shards):
            for row in shards[key]:
                self.waiting[key].add(row)
                self.todo.setdefault(row, []).append(key)
        self.order = sorted(self.waiting)  # every shard of the run, in data order
        self.failed = {}  # row -> why it stopped
        self.attempts = collections.Counter()  # shard -> times it lost its worker

    def __bool__(self):
        return any(self.todo.values())

    def has(self, row):
        return bool(self.todo.get(row))

    def left(self, group, work_per_image):
        """Images x work per image that `group` has still to score."""
        return sum(
            sum(key.size for key in self.todo.get(row, ())) * work_per_image.get(row, 1)
            for row in group
        )

    def next_send(self, rows, is_open):
        """(shard, rows to score it): the earliest open shard at the head of one of
        `rows`' queues, with every row of `rows` whose head it is; None if none."""
        heads = {row: self.todo[row][0] for row in rows if self.has(row)}
        heads = {row: key for row, key in heads.items() if is_open(key)}
        if not heads:
            return None
        key = min(heads.values())
        return key, [row for row in rows if heads.get(row) == key]

    def next_here(self, rows, is_here):
        """(shard, rows to score it): the earliest shard of `rows`' queues for which
        `is_here` holds (open, and decoded on the worker's node), with every row of `rows`
        still waiting for it; None if none."""
        found = [next((k for k in self.todo.get(row, ()) if is_here(k)), None) for row in rows]
        found = [key for key in found if key is not None]
        if not found:
            return None
        key = min(found)
        return key, [row for row in rows if row in self.waiting[key]]

    def take(self, rows, key):
        for row in rows:
            self.todo[row].remove(key)
            self.waiting[key].discard(row)

    def put_back(self, rows, key):
        """`rows` must score `key` again (its worker died); returns how many times that
        happened to `key`."""
        self.attempts[key] += 1
        for row in rows:
            if row not in self.failed:
                bisect.insort(self.todo.setdefault(row, []), key)
                self.waiting[key].add(row)
        return self.attempts[key]

    def stop(self, row, why):
        """Nothing more of `row` is sent or counted."""
        self.failed[row] = why
        for key in self.todo.pop(row, ()):
            self.waiting[key].discard(row)

    def needed(self, key):
        return bool(self.waiting[key])

    def wanted(self, ready, loading, size):
        """The shards the decode window should hold, most urgent first: those wanted by
        ready rows (at most `size`), then those of rows still loading (a head start)."""
        first, then = [], []
        for key in self.order:
            rows = self.waiting[key]
            if rows & ready:
                first.append(key)
                if len(first) >= size:
                    break
            elif rows & loading:
                then.append(key)
        return first + then


def nonfinite_reason(shard, names):
    """Why a row stopped: the images of `shard` whose logits were NaN or inf."""
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return (
        f"non-finite logits (NaN or inf) in {shard}, images {shown}: "
        "its weights are broken; the row stopped and its results are incomplete"
    )


def choose_group(current, groups, held_by_others, work, work_per_image):
    """The group a worker should work on next: its `current` one while it has work, else
    the one with the most work left per worker holding it (None: nothing left).
    `held_by_others`: the groups the other workers hold."""
    if current and any(work.has(row) for row in current):
        return current
    left = [g for g in groups if any(work.has(row) for row in g)]
    if not left:
        return None
    others = collections.Counter(held_by_others)
    return max(left, key=lambda g: work.left(g, work_per_image) / (1 + others[g]))
