"""Progress lines per model (images/s, running top-1/top-5, ETA) and the job's ETA, printed by
the driver (seen in `ray job logs`: plain text, no terminal colour codes)."""

import time


def format_duration(seconds):
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class Progress:
    """Counts images per model; prints at most one line per model every `interval` s.

    The rate counts from a model's first finished shard of this run, so model
    loading and compiling do not drag it down; ETA = images left / rate. `records`
    ({model: [stored records]}, optional): the shards done before, whose hits start the
    running top-1/top-5. With more than one model, each line ends with the whole job's
    progress and ETA (all models' images left / the job's rate since its first shard).
    """

    def __init__(
        self, totals, done, *, records=None, interval=10.0, out=print, clock=time.monotonic
    ):
        self.totals = dict(totals)
        self.done = dict(done)  # images finished, resumed ones included
        self.interval = interval
        self.out = out
        self.clock = clock
        self.first = {}  # model -> time of its first finished shard in this run
        self.since_first = dict.fromkeys(totals, 0)  # images finished after that
        self.last_print = {}
        self.hits = {model: [0, 0, 0] for model in totals}  # top-1, top-5, images scored
        self.job_first = None  # time of the job's first finished shard in this run
        self.job_since_first = 0
        for model, stored in (records or {}).items():
            for record in stored:
                self._count(model, record)

    def _count(self, model, record):
        hits = self.hits[model]
        hits[0] += record["top1_hits"]
        hits[1] += record["top5_hits"]
        hits[2] += record["images"]

    def add(self, model, images, record=None):
        """Record `images` more done for `model` (`record`: the shard's stored record, with
        its hits); print a line when due or finished."""
        now = self.clock()
        self.done[model] += images
        if model in self.first:
            self.since_first[model] += images
        else:
            self.first[model] = now
        if self.job_first is None:
            self.job_first = now
        else:
            self.job_since_first += images
        if record is not None:
            self._count(model, record)
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

    def job_rate(self, now=None):
        """Images per second of all models together in this run (None until two shards)."""
        now = self.clock() if now is None else now
        elapsed = now - (self.job_first if self.job_first is not None else now)
        if not self.job_since_first or elapsed <= 0:
            return None
        return self.job_since_first / elapsed

    def line(self, model, now):
        done, total = self.done[model], self.totals[model]
        text = f"[{model}] {done}/{total} images ({100.0 * done / total:.1f}%)"
        top1, top5, scored = self.hits[model]
        if scored:
            text += f", top-1 {100.0 * top1 / scored:.2f}%, top-5 {100.0 * top5 / scored:.2f}%"
        rate = self.rate(model, now)
        if rate:
            text += f", {rate:.1f} images/s"
            if done < total:
                text += f", ETA {format_duration((total - done) / rate)}"
        if len(self.totals) > 1:
            done, total = sum(self.done.values()), sum(self.totals.values())
            text += f"; job {done}/{total} ({100.0 * done / total:.1f}%)"
            rate = self.job_rate(now)
            if rate and done < total:
                text += f", ETA {format_duration((total - done) / rate)}"
        return text
