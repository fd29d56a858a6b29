"""Progress lines per model (images/s, ETA), printed by the driver (seen in `ray job logs`)."""

import time


def format_duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Counts images per model; prints at most one line per model every `interval` s.

    The rate counts from a model's first finished shard of this run, so model
    loading and compiling do not drag it down; ETA = images left / rate.
    """

    def __init__(self, totals, done, *, interval=10.0, out=print, clock=time.monotonic):
        self.totals = dict(totals)
        self.done = dict(done)  # images finished, resumed ones included
        self.interval = interval
        self.out = out
        self.clock = clock
        self.first = {}  # model -> time of its first finished shard in this run
        self.since_first = dict.fromkeys(totals, 0)  # images finished after that
        self.last_print = {}

    def add(self, model, images):
        """Record `images` more done for `model`; print a line when due or finished."""
        now = self.clock()
        self.done[model] += images
        if model in self.first:
            self.since_first[model] += images
        else:
            self.first[model] = now
        finished = self.done[model] >= self.totals[model]
        if (
            finished
            or model not in self.last_print
            or now - self.last_print[model] >= self.interval
        ):
            self.last_print[model] = now
            self.out(self.line(model, now), flush=True)

    def rate(self, model, now=None):
        """Images per second of `model` in this run (None until two shards finished)."""
        now = self.clock() if now is None else now
        elapsed = now - self.first.get(model, now)
        if not self.since_first.get(model) or elapsed <= 0:
            return None
        return self.since_first[model] / elapsed

    def line(self, model, now):
        done, total = self.done[model], self.totals[model]
        text = f"[{model}] {done}/{total} images ({100.0 * done / total:.1f}%)"
        rate = self.rate(model, now)
        if rate:
            text += f", {rate:.1f} images/s"
            if done < total:
                text += f", ETA {format_duration((total - done) / rate)}"
        return text
