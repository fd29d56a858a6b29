"""Dispatch shards to Ray: decode tasks on every CPU, scoring actors holding several rows.

Ray core, in one direction: the driver opens shards in order (a few ahead of the
workers, so memory stays bounded), each shard's chunks are decoded by Ray tasks
(one CPU each, anywhere in the cluster), and the chunks' object refs go to the
workers that score the shard. The requested rows are split into groups of at
most `rows_per_worker`; a worker loads one group (the one with the most work
left per worker) and scores each open shard under every row of its group that
still needs it, so a shard is decoded once for all rows. A unit of work is
(group, shard); its per-row results go to `on_result` once, when its call
returns. A worker that dies has its units put back at the front of its group's
queue (the decoded chunks are kept) and is replaced; a unit that loses its
worker `max_attempts` times stops the job.
"""

import collections
import dataclasses
import time

from hrnet_eval.decode import chunks, decode
from hrnet_eval.images import ImageError
from hrnet_eval.store import Unit
from hrnet_eval.worker import EvalWorker

LOAD = None  # the "work" of a loading call


class EvalError(RuntimeError):
    """The evaluation cannot go on; the message says why."""


@dataclasses.dataclass
class Slot:
    """A worker position: its current actor (replaced when it dies) and row group."""

    index: int
    actor: object = None
    generation: int = 0
    group: tuple | None = None
    ready: bool = False


@dataclasses.dataclass
class Shard:
    """An open shard: its decoded chunks (object refs) and the groups yet to score it."""

    refs: list
    waiting: set


def one_line(exc):
    """The first line of an exception's message (of its cause, for a task's error)."""
    cause = getattr(exc, "cause", None)
    lines = [line.strip() for line in str(cause or exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def row_groups(rows, rows_per_worker):
    """The rows in groups of at most `rows_per_worker`, in order."""
    rows = list(rows)
    size = max(1, rows_per_worker or len(rows))
    return [tuple(rows[i : i + size]) for i in range(0, len(rows), size)]


class Scheduler:
    """Runs `pending` units ({row: [Unit]}) on `workers` actors; results go to `on_result`."""

    def __init__(
        self,
        *,
        specs,
        items,
        pending,
        groups,
        work_per_image,
        workers,
        actor_options,
        worker_args,
        decode_options,
        decode_tasks,
        on_result,
        skip_corrupt=False,
        log=print,
        depth=2,
        max_attempts=3,
        poll_seconds=1.0,
        stall_seconds=120.0,
    ):
        self.specs = specs
        self.items = items
        self.work_per_image = work_per_image
        self.workers = workers
        self.actor_options = actor_options
        self.worker_args = worker_args
        self.decode_options = decode_options
        self.on_result = on_result
        self.skip_corrupt = skip_corrupt
        self.log = log
        self.depth = depth
        self.max_attempts = max_attempts
        self.max_deaths = 2 * workers + 1
        self.poll_seconds = poll_seconds
        self.stall_seconds = stall_seconds
        # Which rows each shard still needs; each group's shards in order.
        needs = collections.defaultdict(set)
        for units in pending.values():
            for unit in units:
                needs[(unit.start, unit.end)].add(unit.model)
        self.order = sorted(needs)  # shards to open, in data order
        self.needs = dict(needs)
        self.groups = [g for g in groups if any(set(g) & n for n in needs.values())]
        self.queues = {
            g: collections.deque(s for s in self.order if set(g) & needs[s]) for g in self.groups
        }
        # Open enough shards that every decode task has work and every worker `depth` units.
        shard_size = max((e - s for s, e in self.order), default=1)
        chunks_per_shard = len(chunks(0, shard_size))
        self.max_open = workers * depth + -(-2 * decode_tasks // chunks_per_shard)
        self.open = {}  # (start, end) -> Shard
        self.next_to_open = 0
        self.attempts = collections.Counter()
        self.deaths = 0
        self.slots = []
        self.inflight = {}  # ObjectRef -> (slot, generation, (group, (start, end)) or LOAD)
        self.started = None  # time.monotonic() when the first actor was asked for
        self.ready_at = []  # seconds after `started` at which each load finished
        self.load_seconds = []  # {row: seconds to build, fold and compile} of each load
        self.finished_at = None  # seconds after `started` of the last result
        self.images = 0  # images scored by this run, summed over rows

    def timing(self):
        """Where the time went: actor start + rows loaded, then evaluation (seconds)."""
        if not self.ready_at or self.finished_at is None:
            return {"images": self.images}
        evaluating = self.finished_at - self.ready_at[0]
        return {
            "images": self.images,
            "first_worker_ready_s": round(self.ready_at[0], 2),
            "last_worker_ready_s": round(max(self.ready_at), 2),
            "evaluating_s": round(evaluating, 2),
            "images_per_second": round(self.images / evaluating, 3) if evaluating > 0 else None,
            "row_load_seconds": self.load_seconds[0],
        }

    def run(self):
        """Dispatch until every unit is done; raises `EvalError` or `ImageError` on a failure."""
        import ray

        remote = ray.remote(EvalWorker).options(**self.actor_options)
        self._new_actor = lambda: remote.remote(*self.worker_args)
        self._decode = ray.remote(decode).options(**self.decode_options)
        self.started = time.monotonic()
        try:
            self.slots = [Slot(i) for i in range(self.workers)]
            for slot in self.slots:
                self._start(slot)
            last_news = time.monotonic()
            while any(self.queues.values()) or any(
                w is not LOAD for *_, w in self.inflight.values()
            ):
                self._open_shards()
                self._fill()
                ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=self.poll_seconds)
                for ref in ready:
                    self._collect(ref)
                if ready:
                    last_news = time.monotonic()
                elif time.monotonic() - last_news > self.stall_seconds:
                    self.log(
                        f"no worker has finished anything for {self.stall_seconds:.0f} s "
                        f"({sum(s.ready for s in self.slots)} of {self.workers} ready); "
                        "waiting for the cluster",
                        flush=True,
                    )
                    last_news = time.monotonic()
        finally:
            for slot in self.slots:
                if slot.actor is not None:
                    ray.kill(slot.actor)
            self.open.clear()

    def _open_shards(self):
        """Submit the decode tasks of the next shards while fewer than `max_open` are open."""
        while len(self.open) < self.max_open and self.next_to_open < len(self.order):
            key = self.order[self.next_to_open]
            self.next_to_open += 1
            refs = [
                self._decode.remote(self.items[s:e], self.skip_corrupt) for s, e in chunks(*key)
            ]
            waiting = {g for g in self.groups if set(g) & self.needs[key]}
            self.open[key] = Shard(refs, waiting)

    def _start(self, slot):
        """Give `slot` a new actor and have it load the group it should take."""
        slot.actor = self._new_actor()
        slot.ready = False
        slot.group = self._choose(slot)
        if slot.group is None:  # nothing left to do: an idle worker
            slot.ready = True
            return
        ref = slot.actor.load.remote([self.specs[row] for row in slot.group])
        self.inflight[ref] = (slot, slot.generation, LOAD)

    def _collect(self, ref):
        import ray
        from ray.exceptions import RayActorError, RayError, RayTaskError

        slot, generation, work = self.inflight.pop(ref)
        what = f"loading {', '.join(slot.group)}" if work is LOAD else self._describe(work)
        try:
            result = ray.get(ref)
        except RayActorError as exc:
            self._worker_lost(slot, generation, work, exc)
            return
        except RayTaskError as exc:
            if isinstance(exc.cause, ImageError):
                raise ImageError(str(exc.cause)) from None
            raise EvalError(f"{what} failed: {one_line(exc)}") from None
        except RayError as exc:
            raise EvalError(f"{what} failed: {one_line(exc)}") from None
        now = time.monotonic() - self.started
        if work is LOAD:
            slot.ready = True
            self.ready_at.append(now)
            self.load_seconds.append(result.get("load_seconds", {}))
            return
        group, key = work
        for row, counts in result["rows"].items():
            record = {
                **{k: counts[k] for k in ("images", "top1", "top5", "seconds")},
                "names": result["names"],
                "labels": result["labels"],
                "top5_classes": counts["top5_classes"],
                "skipped": result["skipped"],
                "worker": result["worker"],
            }
            self.on_result(Unit(row, *key), record)
            self.images += key[1] - key[0]
        self.finished_at = now
        shard = self.open[key]
        shard.waiting.discard(group)
        if not shard.waiting:
            del self.open[key]  # its decoded chunks leave the object store

    def _describe(self, work):
        group, (start, end) = work
        return f"{', '.join(group)} shard {start:08d}-{end:08d}"

    def _worker_lost(self, slot, generation, work, exc):
        import ray

        if work is not LOAD:
            self.attempts[work] += 1
            if self.attempts[work] >= self.max_attempts:
                raise EvalError(
                    f"{self._describe(work)} lost its worker {self.attempts[work]} times; "
                    f"giving up (last: {one_line(exc)})."
                )
            self.queues[work[0]].appendleft(work[1])
        if generation != slot.generation:  # the death was already handled
            self.log(f"{self._describe(work)} requeued (its worker died)", flush=True)
            return
        self.deaths += 1
        if self.deaths > self.max_deaths:
            raise EvalError(f"workers died {self.deaths} times; giving up (last: {one_line(exc)}).")
        doing = (
            f"loading {', '.join(slot.group)}" if work is LOAD else f"during {self._describe(work)}"
        )
        self.log(
            f"worker {slot.index} died {doing} ({one_line(exc)}); its shards go back in "
            "the queue, starting a new worker",
            flush=True,
        )
        ray.kill(slot.actor)
        slot.generation += 1
        self._start(slot)

    def _busy(self, slot):
        return sum(1 for s, g, _ in self.inflight.values() if s is slot and g == slot.generation)

    def _fill(self):
        for slot in self.slots:
            while slot.ready and self._busy(slot) < self.depth:
                group = self._choose(slot)
                if group is None:
                    break
                if group != slot.group:  # its group ran out, or holds up the window
                    self._load(slot, group)
                    break
                key = self.queues[group][0]
                if key not in self.open:  # the decode window has not reached it yet
                    stuck = self._group_holding_the_window()
                    if stuck is not None and not self._busy(slot):
                        self._load(slot, stuck)
                    break
                self.queues[group].popleft()
                rows = [row for row in group if row in self.needs[key]]
                ref = slot.actor.score.remote(rows, *self.open[key].refs)
                self.inflight[ref] = (slot, slot.generation, (group, key))

    def _load(self, slot, group):
        slot.group, slot.ready = group, False
        ref = slot.actor.load.remote([self.specs[row] for row in group])
        self.inflight[ref] = (slot, slot.generation, LOAD)

    def _group_holding_the_window(self):
        """With the window full, a group that the oldest open shard waits for and that no
        worker holds (fewer workers than groups): an idle worker must take it, or no
        shard would ever close."""
        if len(self.open) < self.max_open:
            return None
        held = {s.group for s in self.slots}
        waiting = self.open[min(self.open)].waiting
        return next((g for g in self.groups if g in waiting and g not in held), None)

    def _work_left(self, group):
        per_image = sum(self.work_per_image.get(row, 1) for row in group)
        return sum(e - s for s, e in self.queues[group]) * per_image

    def _choose(self, slot):
        """The group this worker should work on next (None: nothing left)."""
        if slot.group is not None and self.queues.get(slot.group):
            return slot.group
        left = [g for g, shards in self.queues.items() if shards]
        if not left:
            return None
        others = collections.Counter(s.group for s in self.slots if s is not slot)
        return max(left, key=lambda g: self._work_left(g) / (1 + others[g]))
