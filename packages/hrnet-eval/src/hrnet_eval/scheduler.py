"""Dispatch (model, shard) units to Ray actors; redo the units of workers that die.

Every requested model's units are queued at once. A new worker first loads a
model (the one with the most work left per worker) and gets units only once
it is ready, so a slow or replaced worker holds no work hostage. A worker
keeps its model while that model has units left, then takes another. Each
ready worker has `depth` units in flight (the next one decodes while the
current one runs). A unit whose worker died goes back to the front of the
queue and the worker is replaced; a unit's result is accepted once, when its
call returns, so nothing is counted twice.
"""

import collections
import dataclasses
import time

from hrnet_eval.images import ImageError
from hrnet_eval.worker import EvalWorker

LOAD = None  # the "unit" of a model-loading call


class EvalError(RuntimeError):
    """The evaluation cannot go on; the message says why."""


@dataclasses.dataclass
class Slot:
    """A worker position: its current actor (replaced when it dies) and model."""

    index: int
    actor: object = None
    generation: int = 0
    model: str | None = None
    ready: bool = False


def one_line(exc):
    """The first line of an exception's message (of its cause, for a task's error)."""
    cause = getattr(exc, "cause", None)
    lines = [line.strip() for line in str(cause or exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


class Scheduler:
    """Runs `pending` units ({model: [Unit]}) on `workers` actors; results go to `on_result`."""

    def __init__(
        self,
        *,
        specs,
        items,
        pending,
        work_per_image,
        workers,
        actor_options,
        worker_args,
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
        self.pending = {m: collections.deque(units) for m, units in pending.items()}
        self.work_per_image = work_per_image
        self.workers = workers
        self.actor_options = actor_options
        self.worker_args = worker_args
        self.on_result = on_result
        self.skip_corrupt = skip_corrupt
        self.log = log
        self.depth = depth
        self.max_attempts = max_attempts
        self.max_deaths = 2 * workers + 1
        self.poll_seconds = poll_seconds
        self.stall_seconds = stall_seconds
        self.attempts = collections.Counter()
        self.deaths = 0
        self.slots = []
        self.inflight = {}  # ObjectRef -> (slot, generation, unit or LOAD)
        self.started = None  # time.monotonic() when the first actor was asked for
        self.ready_at = []  # seconds after `started` at which each model load finished
        self.finished_at = None  # seconds after `started` of the last result
        self.images = 0  # images evaluated by this run

    def timing(self):
        """Where the time went: actor start + model load, then evaluation (seconds)."""
        if not self.ready_at or self.finished_at is None:
            return {"images": self.images}
        evaluating = self.finished_at - self.ready_at[0]
        return {
            "images": self.images,
            "first_worker_ready_s": round(self.ready_at[0], 2),
            "last_worker_ready_s": round(max(self.ready_at), 2),
            "evaluating_s": round(evaluating, 2),
            "images_per_second": round(self.images / evaluating, 3) if evaluating > 0 else None,
        }

    def run(self):
        """Dispatch until every unit is done; raises `EvalError` or `ImageError` on a failure."""
        import ray

        remote = ray.remote(EvalWorker).options(**self.actor_options)
        self._new_actor = lambda: remote.remote(*self.worker_args)
        self.started = time.monotonic()
        try:
            self.slots = [Slot(i) for i in range(self.workers)]
            for slot in self.slots:
                self._start(slot)
            last_news = time.monotonic()
            while any(self.pending.values()) or any(
                u is not LOAD for _, _, u in self.inflight.values()
            ):
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

    def _start(self, slot):
        """Give `slot` a new actor and have it load the model it should take."""
        slot.actor = self._new_actor()
        slot.ready = False
        slot.model = self._choose(slot)
        if slot.model is None:  # nothing left to do: an idle worker
            slot.ready = True
            return
        ref = slot.actor.load.remote(self.specs[slot.model])
        self.inflight[ref] = (slot, slot.generation, LOAD)

    def _collect(self, ref):
        import ray
        from ray.exceptions import RayActorError, RayError, RayTaskError, WorkerCrashedError

        slot, generation, unit = self.inflight.pop(ref)
        try:
            result = ray.get(ref)
        except (RayActorError, WorkerCrashedError) as exc:
            self._worker_lost(slot, generation, unit, exc)
            return
        except RayTaskError as exc:
            if isinstance(exc.cause, ImageError):
                raise ImageError(str(exc.cause)) from None
            what = f"loading {slot.model}" if unit is LOAD else str(unit)
            raise EvalError(f"{what} failed: {one_line(exc)}") from None
        except RayError as exc:
            raise EvalError(f"{unit or slot.model} failed: {one_line(exc)}") from None
        now = time.monotonic() - self.started
        if unit is LOAD:
            slot.ready = True
            self.ready_at.append(now)
        else:
            self.on_result(unit, result)
            self.images += unit.size
            self.finished_at = now

    def _worker_lost(self, slot, generation, unit, exc):
        import ray

        if unit is not LOAD:
            self.attempts[unit] += 1
            if self.attempts[unit] >= self.max_attempts:
                raise EvalError(
                    f"{unit} lost its worker {self.attempts[unit]} times; giving up "
                    f"(last: {one_line(exc)})."
                )
            self.pending[unit.model].appendleft(unit)
        if generation != slot.generation:  # the death was already handled
            self.log(f"{unit} requeued (its worker died)", flush=True)
            return
        self.deaths += 1
        if self.deaths > self.max_deaths:
            raise EvalError(f"workers died {self.deaths} times; giving up (last: {one_line(exc)}).")
        doing = f"loading {slot.model}" if unit is LOAD else f"during {unit}"
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
                model = self._choose(slot)
                if model is None:
                    return
                unit = self.pending[model].popleft()
                slot.model = model
                ref = slot.actor.evaluate.remote(
                    self.specs[model], self.items[unit.start : unit.end], self.skip_corrupt
                )
                self.inflight[ref] = (slot, slot.generation, unit)

    def _work_left(self, model):
        return sum(u.size for u in self.pending[model]) * self.work_per_image.get(model, 1)

    def _choose(self, slot):
        """The model this worker should take a unit of next (None: nothing left)."""
        if slot.model is not None and self.pending.get(slot.model):
            return slot.model
        left = [m for m, units in self.pending.items() if units]
        if not left:
            return None
        others = collections.Counter(s.model for s in self.slots if s is not slot)
        return max(left, key=lambda m: self._work_left(m) / (1 + others[m]))
