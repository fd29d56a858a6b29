"""`Timing`: when each row became ready and how much was scored after, for results.json."""

import dataclasses
import time


def format_steps(steps):
    """{step: seconds} as a log line's part: "read 0.4 + first call 7.9"."""
    return " + ".join(f"{step.replace('_', ' ')} {seconds:.1f}" for step, seconds in steps.items())


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
        """Row `row` is ready (`result`: a `worker.Loaded`)."""
        self.loads.setdefault(row, {**dataclasses.asdict(result), "ready_s": round(self.now(), 2)})
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
