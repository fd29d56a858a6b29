"""Dispatch shards to Ray: decode tasks on every CPU, scoring actors holding several rows.

Ray core, in one direction: the driver keeps a bounded window of decoded shards
(`hrnet_eval.window`), each shard decoded by Ray tasks (one CPU each, anywhere in
the cluster), and sends the chunks' object refs to the workers that score it.
The requested rows are split into groups of at most `rows_per_worker`; a worker
takes one group (the one with the most work left per worker) and loads its rows
one call each, concurrently; as soon as one row is ready it scores the open
shards under the ready rows that still need them, so a shard is decoded once for
every ready row of its decoding (rows with another pipeline have shards of their
own). Shards that rows still loading need stay decoded while half of the object
store holds them; a row that becomes ready after its first shards left the window
has them decoded again (counted). Each (rows, shard) call's per-row counts go to
`on_result` once. A worker that dies has its shards put back (its rows in front)
and is replaced; a shard that loses its worker `max_attempts` times stops the
job. A row whose logits are not all finite stops (named in `failed`); the other
rows go on.

`Pool` holds the actors (start, load, replace the dead); `Scheduler` is the loop
(window, dispatch, results). What is left and who takes it is `hrnet_eval.policy`,
which shards are held `hrnet_eval.window`.
"""

import collections
import dataclasses
import time
import typing

import ray
from ray.exceptions import RayActorError, RayError, RayTaskError

from hrnet_eval.cluster import node_resources
from hrnet_eval.config import DEFAULT_WORKER_WAIT_SECONDS, WorkerConfig
from hrnet_eval.decode import decode, decode_tasks
from hrnet_eval.errors import ResumableError, one_line
from hrnet_eval.images import ImageError
from hrnet_eval.nodes import node_name
from hrnet_eval.plan import Shard
from hrnet_eval.policy import Work, choose_group, nonfinite_reason
from hrnet_eval.timing import Timing, format_steps
from hrnet_eval.window import DecodeWindow, hold_images, window_size
from hrnet_eval.worker import EvalWorker


@dataclasses.dataclass(frozen=True)
class Resources:
    """Where the work runs: `workers` scoring actors (Ray options, the `WorkerConfig` they
    start with) and decode tasks (Ray options, how many at a time, whether placed on the
    node of the workers that will score their shard)."""

    workers: int
    actor_options: dict
    worker: WorkerConfig
    decode_options: dict
    decode_tasks: int
    place_decodes: bool = True  # on the node of the workers that will score the shard
    # for a node that can host a lost worker's replacement
    worker_wait_seconds: float = DEFAULT_WORKER_WAIT_SECONDS


class Call(typing.NamedTuple):
    """A call in flight on a worker: "node" (where it runs), "load" of `rows[0]`, or
    "score" of `shard`."""

    kind: str
    rows: tuple = ()
    shard: Shard = None

    def __str__(self):
        if self.kind == "node":
            return "starting"
        if self.kind == "load":
            return f"loading {self.rows[0]}"
        return f"{', '.join(self.rows)} {self.shard}"


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
    node: tuple = None  # (Ray node id, address) of its actor, once it answered

    @property
    def where(self):
        return f"worker {self.index}" + (f" on {node_name(*self.node)}" if self.node else "")


class Pool:
    """The scoring actors, one per `Slot`, and their calls in flight
    ({ObjectRef: (slot, generation, Call)}); a dead actor is replaced (at most
    2 x workers + 1 times in a run)."""

    def __init__(self, remote, resources, specs, work, groups, clock, log):
        self.remote, self.resources, self.specs = remote, resources, specs
        self.work, self.groups, self.clock, self.log = work, groups, clock, log
        self.work_per_image = {row: spec.preset.flops for row, spec in specs.items()}
        self.slots = [Slot(i) for i in range(resources.workers)]
        self.inflight = {}
        self.placed = 0  # shards placed on a node (`place`)
        self.deaths = 0
        self.max_deaths = 2 * resources.workers + 1

    def start(self, slot):
        """Give `slot` a new actor and have it load the group it should take."""
        slot.actor = self.remote.remote(self.resources.worker)
        slot.group, slot.loaded, slot.loading, slot.node = (), set(), set(), None
        self.call(slot, Call("node"), slot.actor.node)
        group = self.choose(slot)
        if group is not None:
            self.load_group(slot, group)

    def load_group(self, slot, group):
        """Have `slot` load the rows of `group` that still have work, one call each."""
        slot.group = group
        slot.loaded &= set(group)
        rows = [row for row in group if self.work.has(row) and row not in slot.loaded]
        specs = [self.specs[row] for row in rows]
        for row in rows:
            if row not in slot.loading:
                slot.loading.add(row)
                self.call(slot, Call("load", (row,)), slot.actor.load, self.specs[row], specs)

    def call(self, slot, what, method, *args):
        self.inflight[method.remote(*args)] = (slot, slot.generation, what)

    def calls(self, slot, generation=None, kind=None):
        """The calls in flight on `slot`'s actor of `generation` (default its current)."""
        generation = slot.generation if generation is None else generation
        return [
            what
            for s, g, what in self.inflight.values()
            if s is slot and g == generation and kind in (None, what.kind)
        ]

    def loaded(self, slot, generation, row, result):
        """`slot`'s actor of `generation` has loaded `row` (`result`: a `worker.Loaded`);
        it counts if the actor is still the slot's and the row in its group."""
        if generation != slot.generation:
            return
        slot.loading.discard(row)
        if row not in slot.group:
            return
        slot.loaded.add(row)
        for note in result.notes:
            self.log(f"{row}: {note}", flush=True)
        steps = format_steps(result.steps)
        self.log(
            f"{row}: ready on worker {slot.index} in {result.seconds:.1f} s "
            f"({result.how}{': ' + steps + ' s' if steps else ''}), "
            f"{self.clock.now():.1f} s after the first worker was asked for",
            flush=True,
        )
        self.clock.loaded(row, result)

    def choose(self, slot):
        """The group `slot` should work on next (None: nothing left)."""
        held = [s.group for s in self.slots if s is not slot]
        return choose_group(slot.group, self.groups, held, self.work, self.work_per_image)

    def lost(self, slot, generation, what, exc):
        """`slot`'s actor of `generation` died during `what`: replace it (once)."""
        if generation != slot.generation:  # the death was already handled
            if what.kind == "score":
                self.log(f"{what} requeued (its worker died)", flush=True)
            return
        self.deaths += 1
        if self.deaths > self.max_deaths:
            raise ResumableError(
                f"workers died {self.deaths} times; giving up (last: {one_line(exc)})."
            )
        if what.kind != "score":  # say the shard it was scoring, if any, beside its loads
            what = next(iter(self.calls(slot, generation, "score")), what)
        doing = f"during {what}" if what.kind == "score" else f"while {what}"
        self.log(
            f"{slot.where} died {doing} ({one_line(exc)}); its shards go back in "
            "the queue, starting a new worker",
            flush=True,
        )
        ray.kill(slot.actor)
        slot.generation += 1
        self.start(slot)

    def report_stall(self, seconds):
        loaded = sum(bool(s.loaded) for s in self.slots)
        loading = "; ".join(
            f"worker {s.index} loading {', '.join(sorted(s.loading))}"
            for s in self.slots
            if s.loading
        )
        doing = f" ({loading}: weights, then its program built or read and compiled)"
        self.log(
            f"no worker has finished anything for {seconds:.0f} s ({loaded} of "
            f"{len(self.slots)} with a row ready){doing if loading else ''}; "
            f"waiting for the cluster, {self.clock.now():.0f} s since the first worker was "
            "asked for",
            flush=True,
        )

    def place(self, backlog):
        """The node whose workers should score the next shard opened: of the nodes of the
        workers with a row ready (else of every worker that said where it runs; None before
        any did), the one with the fewest shards waiting there per worker (`backlog`:
        {node: shards decoded or decoding there, not yet sent}), in turn on a tie."""
        ready = [slot.node[0] for slot in self.slots if slot.node and slot.loaded]
        nodes = collections.Counter(ready or [s.node[0] for s in self.slots if s.node])
        if not nodes:
            return None
        self.placed += 1
        order = sorted(nodes)
        turn = {node: (i - self.placed) % len(order) for i, node in enumerate(order)}
        return min(nodes, key=lambda n: (backlog.get(n, 0) / nodes[n], turn[n]))

    def kill_all(self):
        for slot in self.slots:
            if slot.actor is not None:
                ray.kill(slot.actor)


class Scheduler:
    """Runs the work of `shards` ({Shard: rows to score it}, `plan.Plan.shards`) for rows of
    `specs` ({row: ModelSpec}) with `resources`; each (row, shard) scored goes to
    `on_result(row, shard, scored)` once, `scored` the worker's `ScoredShard`."""

    depth = 2  # score calls in flight per worker
    max_attempts = 3  # workers a shard may lose
    poll_seconds = 1.0
    stall_seconds = 30.0  # silence before a "waiting for the cluster" line

    def __init__(
        self,
        *,
        specs,
        items,
        shards,
        groups,
        resources,
        on_result,
        skip_corrupt=False,
        log=print,
    ):
        self.specs, self.items, self.resources = specs, items, resources
        self.on_result, self.skip_corrupt, self.log = on_result, skip_corrupt, log
        self.work = Work(shards)
        self.groups = [g for g in groups if any(self.work.has(row) for row in g)]
        self.pool = self.clock = self.window = None  # from `run`
        self.nodes = {}  # Shard -> the node its decode tasks were placed on
        self.bytes = {"images": 0, "moved": 0}  # decoded bytes scored; from another node
        self.no_host_since = None

    @property
    def failed(self):
        """{row: why it stopped} (non-finite logits)."""
        return self.work.failed

    def timing(self):
        """Where the time went: actor start + rows loaded, then evaluation (seconds)."""
        if not self.clock:
            return {"images": 0}
        return {
            **self.clock.summary(self.window),
            "scored_bytes": self.bytes["images"],
            "bytes_between_nodes": self.bytes["moved"],
        }

    def run(self):
        """Dispatch until every unit is done; raises `ResumableError` or `ImageError` on a failure."""
        # a load per row and the scoring calls
        concurrency = max(map(len, self.groups), default=1) + self.depth + 1
        options = dict(max_concurrency=concurrency, **self.resources.actor_options)
        remote = ray.remote(EvalWorker).options(**options)
        task = ray.remote(decode)
        shard_size = max((key.size for key in self.work.order), default=1)
        workers, decoders = self.resources.workers, self.resources.decode_tasks
        crop = max((key.decoding.crop for key in self.work.order), default=1)
        store_bytes = ray.cluster_resources().get("object_store_memory", 0)
        submit = decode_tasks(task, self.resources.decode_options, self.items, self.skip_corrupt)

        def open_shard(key):  # decoded on the node of the workers that will score it
            self.nodes[key] = None
            if self.resources.place_decodes:
                self.nodes[key] = self.pool.place(self._backlog())
            return submit(key, self.nodes[key])

        self.window = DecodeWindow(
            window_size(workers, self.depth, decoders, shard_size),
            open_shard,
            hold=hold_images(store_bytes, crop),
        )
        self.log(
            f"decode window: {self.window.size} shard(s) ahead; shards that rows still "
            f"loading need stay decoded up to {self.window.hold} images "
            f"(half of the object store's {store_bytes / 2**30:.1f} GiB)",
            flush=True,
        )
        self.clock = Timing(row for g in self.groups for row in g if self.work.has(row))
        self.pool = Pool(
            remote,
            self.resources,
            self.specs,
            self.work,
            self.groups,
            self.clock,
            self.log,
        )
        try:
            for slot in self.pool.slots:
                self.pool.start(slot)
            last_news = time.monotonic()
            while self.work or any(w.kind == "score" for *_, w in self.pool.inflight.values()):
                self._update_window()
                self._fill()
                inflight = list(self.pool.inflight)
                ready, _ = ray.wait(inflight, num_returns=1, timeout=self.poll_seconds)
                for ref in ready:
                    self._collect(ref)
                self._check_hosts()
                if ready or time.monotonic() - last_news > self.stall_seconds:
                    if not ready:
                        self.pool.report_stall(self.stall_seconds)
                    last_news = time.monotonic()
        finally:
            self.pool.kill_all()
            self.window.clear()

    def _backlog(self):
        """{node: open shards placed there that still have rows to be sent}."""
        return collections.Counter(
            self.nodes.get(key) for key in self.window.refs if self.work.needed(key)
        )

    def _check_hosts(self):
        """After a worker died: stop (`ResumableError`) once no alive node could host a
        worker for the resources' `worker_wait_seconds`."""
        if not self.pool.deaths:
            return
        options = self.resources.actor_options
        gpus, cpus = options.get("num_gpus") or 0, options.get("num_cpus") or 0
        if any(c >= cpus and g >= gpus for c, g in node_resources()):
            self.no_host_since = None
            return
        self.no_host_since = self.no_host_since or time.monotonic()
        waited = time.monotonic() - self.no_host_since
        if waited >= self.resources.worker_wait_seconds:
            raise ResumableError(
                f"no node left can host a worker ({gpus:g} GPU, {cpus:g} CPU): waited "
                f"{waited:.0f} s (--worker-wait-seconds) after the cluster lost them"
            )

    def _update_window(self):
        """Shards needed by ready rows first, then by rows still loading; with placement,
        none before a worker said where it runs (a second or two: the loads take longer)."""
        if self.resources.place_decodes and not any(slot.node for slot in self.pool.slots):
            return
        ready = set().union(*(s.loaded for s in self.pool.slots))
        loading = set().union(*(s.loading for s in self.pool.slots))
        self.window.update(self.work.wanted(ready, loading, self.window.size), self.work.needed)

    def _fill(self):
        for slot in self.pool.slots:
            group = self.pool.choose(slot)
            if group is None:
                continue
            if group != slot.group:  # its group ran out: take another once idle
                if not self.pool.calls(slot, kind="score"):
                    self.pool.load_group(slot, group)
                continue
            here = slot.node[0] if slot.node else None
            while len(self.pool.calls(slot, kind="score")) < self.depth:
                ready = [row for row in group if row in slot.loaded]
                send = None
                if here is not None:  # shards decoded on its node first
                    send = self.work.next_here(
                        ready, lambda key: key in self.window and self.nodes.get(key) == here
                    )
                send = send or self.work.next_send(ready, lambda key: key in self.window)
                if send is None:
                    break
                key, rows = send
                self.work.take(rows, key)
                score = Call("score", tuple(rows), key)
                self.pool.call(slot, score, slot.actor.score, rows, *self.window.refs[key])

    def _collect(self, ref):
        slot, generation, what = self.pool.inflight.pop(ref)
        try:
            result = ray.get(ref)
        except RayActorError as exc:
            if (
                what.kind == "score"
                and self.work.put_back(what.rows, what.shard) >= self.max_attempts
            ):
                raise ResumableError(
                    f"{what} lost its worker {self.max_attempts} times; "
                    f"giving up (last: {one_line(exc)})."
                )
            self.pool.lost(slot, generation, what, exc)
            return
        except RayTaskError as exc:
            if isinstance(exc.cause, ImageError):
                raise ImageError(str(exc.cause)) from None
            raise ResumableError(f"{what} failed: {one_line(exc)}") from None
        except RayError as exc:
            raise ResumableError(f"{what} failed: {one_line(exc)}") from None
        if what.kind == "node":
            if generation == slot.generation:
                slot.node = tuple(result)
            return
        if what.kind == "load":
            self.pool.loaded(slot, generation, what.rows[0], result)
            return
        self.bytes["images"] += result.image_bytes
        self.bytes["moved"] += result.moved_bytes
        for row in what.rows:
            counts = result.rows[row]
            if row in self.work.failed:  # sent before the row stopped
                continue
            if counts.nonfinite:
                self.work.stop(row, nonfinite_reason(what.shard, counts.nonfinite))
                self.log(f"{row}: {self.work.failed[row]}", flush=True)
                continue
            self.on_result(row, what.shard, result)
            self.clock.scored(what.shard.size)
