"""Dispatch shards to Ray: decode tasks on every CPU, scoring actors holding several rows.

Ray core, in one direction: the driver keeps a bounded window of decoded shards
(`hrnet_eval.window`), each shard decoded by Ray tasks (one CPU each, anywhere in
the cluster), and sends the chunks' object refs to the workers that score it.
The requested rows are split into groups of at most `rows_per_worker`; a worker
takes one group (the one with the most work left per worker) and loads its rows
one call each, concurrently; as soon as one row is ready it scores the open
shards under the ready rows that still need them, so a shard is decoded once for
every row that is ready in time. A row that becomes ready after its first shards
left the window has them decoded again (counted). Each (rows, shard) call's
per-row results go to `on_result` once. A worker that dies has its shards put
back (its rows in front) and is replaced; a shard that loses its worker
`max_attempts` times stops the job. A row whose logits are not all finite stops
(named in `failed`); the other rows go on.

This module is the Ray loop (actors, calls, results, lost workers); what is left and
who takes it is `hrnet_eval.policy`, which shards are held `hrnet_eval.window`.
"""

import collections
import dataclasses
import time

from hrnet_eval.decode import chunks, decode
from hrnet_eval.errors import ResumableError
from hrnet_eval.images import ImageError
from hrnet_eval.policy import Work, choose_group
from hrnet_eval.store import Unit
from hrnet_eval.window import DecodeWindow
from hrnet_eval.worker import EvalWorker


@dataclasses.dataclass
class Slot:
    """A worker position: its current actor (replaced when it dies), row group, and which
    of the group's rows are loaded or loading."""

    index: int
    actor: object = None
    generation: int = 0
    group: tuple = ()
    loaded: set = dataclasses.field(default_factory=set)
    loading: set = dataclasses.field(default_factory=set)


def one_line(exc):
    """The first line of an exception's message (of its cause, for a task's error)."""
    cause = getattr(exc, "cause", None)
    lines = [line.strip() for line in str(cause or exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class Timing:
    """When each row became ready and how much was scored after: where a run's time went."""

    def __init__(self, rows):
        self.rows = set(rows)
        self.started = time.monotonic()  # when the first actor was asked for
        self.loads = {}  # row -> its first load's result, with "ready_s" after `started`
        self.finished_at = None  # seconds after `started` of the last result
        self.images = 0  # images scored by this run, summed over rows
        self.all_ready_at = None  # seconds after `started` when every row had loaded once
        self.images_all_ready = 0  # of `images`, those scored after that

    def now(self):
        return time.monotonic() - self.started

    def loaded(self, row, result):
        self.loads.setdefault(row, {**result, "ready_s": round(self.now(), 2)})
        if self.all_ready_at is None and self.rows <= set(self.loads):
            self.all_ready_at = self.now()

    def scored(self, images):
        self.images += images
        if self.all_ready_at is not None:
            self.images_all_ready += images
        self.finished_at = self.now()

    def summary(self, window):
        """The figures of results.json's `timing` (seconds, images x rows)."""
        out = {
            "images": self.images,
            "decoded_images": window.decoded,
            "decoded_twice": window.decoded_twice,
        }
        if not self.loads or self.finished_at is None:
            return out
        ready = [load["ready_s"] for load in self.loads.values()]
        evaluating = self.finished_at - min(ready)
        steady = None
        if self.all_ready_at is not None and self.finished_at > self.all_ready_at:
            steady = self.images_all_ready / (self.finished_at - self.all_ready_at)
        return {
            **out,
            "images_per_second_all_ready": round(steady, 3) if steady else None,
            "first_worker_ready_s": round(min(ready), 2),
            "last_worker_ready_s": round(max(ready), 2),
            "evaluating_s": round(evaluating, 2),
            "images_per_second": round(self.images / evaluating, 3) if evaluating > 0 else None,
            "row_load_seconds": {row: load["seconds"] for row, load in self.loads.items()},
            "row_load": {
                row: {k: load[k] for k in ("seconds", "how", "steps", "ready_s")}
                for row, load in self.loads.items()
            },
        }


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
        worker_options,
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
        self.worker_options = worker_options
        self.decode_options = decode_options
        self.on_result = on_result
        self.skip_corrupt = skip_corrupt
        self.log = log
        self.depth = depth
        self.max_attempts = max_attempts
        self.max_deaths = 2 * workers + 1
        self.poll_seconds = poll_seconds
        self.stall_seconds = stall_seconds
        self.work = Work(pending)
        self.groups = [g for g in groups if any(self.work.has(row) for row in g)]
        # Open enough shards that every decode task has work and every worker `depth` units.
        shard_size = max((e - s for s, e in self.work.order), default=1)
        chunks_per_shard = len(chunks(0, shard_size))
        size = workers * depth + -(-2 * decode_tasks // chunks_per_shard)
        self.window = DecodeWindow(size, self._decode_shard)
        self.attempts = collections.Counter()
        self.deaths = 0
        self.slots = []
        self.inflight = {}  # ObjectRef -> (slot, generation, ("load", row) | ("score", rows, key))
        self.clock = None  # Timing, from the first actor asked for

    @property
    def failed(self):
        """{row: why it stopped} (non-finite logits)."""
        return self.work.failed

    def timing(self):
        """Where the time went: actor start + rows loaded, then evaluation (seconds)."""
        return self.clock.summary(self.window) if self.clock else {"images": 0}

    def run(self):
        """Dispatch until every unit is done; raises `ResumableError` or `ImageError` on a failure."""
        import ray

        concurrency = max(map(len, self.groups), default=1) + self.depth + 1
        remote = ray.remote(EvalWorker).options(max_concurrency=concurrency, **self.actor_options)
        self._new_actor = lambda: remote.remote(**self.worker_options)
        self._decode = ray.remote(decode).options(**self.decode_options)
        self.clock = Timing(row for g in self.groups for row in g if self.work.has(row))
        try:
            self.slots = [Slot(i) for i in range(self.workers)]
            for slot in self.slots:
                self._start(slot)
            last_news = time.monotonic()
            while self.work or any(w[0] == "score" for *_, w in self.inflight.values()):
                self._update_window()
                self._fill()
                ready, _ = ray.wait(list(self.inflight), num_returns=1, timeout=self.poll_seconds)
                for ref in ready:
                    self._collect(ref)
                if ready:
                    last_news = time.monotonic()
                elif time.monotonic() - last_news > self.stall_seconds:
                    self.log(
                        f"no worker has finished anything for {self.stall_seconds:.0f} s "
                        f"({sum(bool(s.loaded) for s in self.slots)} of {self.workers} with a "
                        "row ready); waiting for the cluster",
                        flush=True,
                    )
                    last_news = time.monotonic()
        finally:
            for slot in self.slots:
                if slot.actor is not None:
                    ray.kill(slot.actor)
            self.window.clear()

    # The decode window: shards needed by ready rows first, then by rows still loading.

    def _decode_shard(self, key):
        return [self._decode.remote(self.items[s:e], self.skip_corrupt) for s, e in chunks(*key)]

    def _update_window(self):
        ready = set().union(*(s.loaded for s in self.slots))
        loading = set().union(*(s.loading for s in self.slots))
        self.window.update(self.work.wanted(ready, loading, self.window.size), self.work.needed)

    # Which worker does what.

    def _start(self, slot):
        """Give `slot` a new actor and have it load the group it should take."""
        slot.actor = self._new_actor()
        slot.group, slot.loaded, slot.loading = (), set(), set()
        group = self._choose(slot)
        if group is not None:
            self._load_group(slot, group)

    def _load_group(self, slot, group):
        """Have `slot` load the rows of `group` that still have work, one call each."""
        slot.group = group
        slot.loaded &= set(group)
        rows = [row for row in group if self.work.has(row) and row not in slot.loaded]
        specs = [self.specs[row] for row in rows]
        for row in rows:
            if row in slot.loading:
                continue
            slot.loading.add(row)
            ref = slot.actor.load.remote(self.specs[row], specs)
            self.inflight[ref] = (slot, slot.generation, ("load", row))

    def _busy(self, slot, kind=None):
        return sum(
            1
            for s, g, work in self.inflight.values()
            if s is slot and g == slot.generation and (kind is None or work[0] == kind)
        )

    def _fill(self):
        for slot in self.slots:
            group = self._choose(slot)
            if group is None:
                continue
            if group != slot.group:  # its group ran out: take another once idle
                if not self._busy(slot, "score"):
                    self._load_group(slot, group)
                continue
            while self._busy(slot, "score") < self.depth:
                ready = [row for row in group if row in slot.loaded]
                send = self.work.next_send(ready, lambda key: key in self.window)
                if send is None:
                    break
                key, rows = send
                self.work.take(rows, key)
                ref = slot.actor.score.remote(rows, *self.window.refs[key])
                self.inflight[ref] = (slot, slot.generation, ("score", tuple(rows), key))

    def _choose(self, slot):
        """The group this worker should work on next (None: nothing left)."""
        held = [s.group for s in self.slots if s is not slot]
        return choose_group(slot.group, self.groups, held, self.work, self.work_per_image)

    # Results.

    def _collect(self, ref):
        import ray
        from ray.exceptions import RayActorError, RayError, RayTaskError

        slot, generation, work = self.inflight.pop(ref)
        what = f"loading {work[1]}" if work[0] == "load" else self._describe(work)
        try:
            result = ray.get(ref)
        except RayActorError as exc:
            self._worker_lost(slot, generation, work, exc)
            return
        except RayTaskError as exc:
            if isinstance(exc.cause, ImageError):
                raise ImageError(str(exc.cause)) from None
            raise ResumableError(f"{what} failed: {one_line(exc)}") from None
        except RayError as exc:
            raise ResumableError(f"{what} failed: {one_line(exc)}") from None
        if work[0] == "load":
            self._loaded(slot, generation, work[1], result)
            return
        _, rows, key = work
        for row in rows:
            counts = result["rows"][row]
            if row in self.work.failed:  # sent before the row stopped
                continue
            if counts["nonfinite"]:
                self._stop_row(row, key, counts["nonfinite"])
                continue
            record = {
                **{k: counts[k] for k in ("images", "top1", "top5", "seconds")},
                "names": result["names"],
                "labels": result["labels"],
                "top5_classes": counts["top5_classes"],
                "skipped": result["skipped"],
                "digests": result["digests"],
                "worker": result["worker"],
            }
            self.on_result(Unit(row, *key), record)
            self.clock.scored(key[1] - key[0])

    def _loaded(self, slot, generation, row, result):
        if generation != slot.generation:
            return
        slot.loading.discard(row)
        if row not in slot.group:
            return
        slot.loaded.add(row)
        for note in result.get("notes", ()):
            self.log(f"{row}: {note}", flush=True)
        self.log(
            f"{row}: ready on worker {slot.index} in {result['seconds']:.1f} s "
            f"({result['how']}), {self.clock.now():.1f} s after the first worker was asked for",
            flush=True,
        )
        self.clock.loaded(row, result)

    def _stop_row(self, row, key, names):
        """`row` gave non-finite logits: nothing more of it is counted or sent."""
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        why = (
            f"non-finite logits (NaN or inf) in shard {key[0]:08d}-{key[1]:08d}, images {shown}: "
            "its weights are broken; the row stopped and its results are incomplete"
        )
        self.work.stop(row, why)
        self.log(f"{row}: {why}", flush=True)

    def _describe(self, work):
        _, rows, (start, end) = work
        return f"{', '.join(rows)} shard {start:08d}-{end:08d}"

    def _worker_lost(self, slot, generation, work, exc):
        import ray

        if work[0] == "score":
            _, rows, key = work
            self.attempts[key] += 1
            if self.attempts[key] >= self.max_attempts:
                raise ResumableError(
                    f"{self._describe(work)} lost its worker {self.attempts[key]} times; "
                    f"giving up (last: {one_line(exc)})."
                )
            self.work.put_back(rows, key)
        if generation != slot.generation:  # the death was already handled
            if work[0] == "score":
                self.log(f"{self._describe(work)} requeued (its worker died)", flush=True)
            return
        self.deaths += 1
        if self.deaths > self.max_deaths:
            raise ResumableError(
                f"workers died {self.deaths} times; giving up (last: {one_line(exc)})."
            )
        if work[0] == "load":  # say the shard it was scoring, if any, beside its loads
            work = next(
                (
                    w
                    for s, g, w in self.inflight.values()
                    if s is slot and g == generation and w[0] == "score"
                ),
                work,
            )
        doing = f"loading {work[1]}" if work[0] == "load" else f"during {self._describe(work)}"
        self.log(
            f"worker {slot.index} died {doing} ({one_line(exc)}); its shards go back in "
            "the queue, starting a new worker",
            flush=True,
        )
        ray.kill(slot.actor)
        slot.generation += 1
        self._start(slot)
