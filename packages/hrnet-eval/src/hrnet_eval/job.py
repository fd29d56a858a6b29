"""One evaluation job: data, weights, plan against the shard store, dispatch, results."""

import collections
import concurrent.futures
import datetime
import os
import tempfile
import time
from pathlib import Path

from hrnet_eval import cluster, demo, nodes, prebuild, results
from hrnet_eval.config import WorkerConfig
from hrnet_eval.data import DataError, load_dataset
from hrnet_eval.errors import EvalError
from hrnet_eval.nodes import current_node
from hrnet_eval.permissions import make_private
from hrnet_eval.plan import Unit, make_plan
from hrnet_eval.policy import row_groups
from hrnet_eval.progress import Progress, format_duration
from hrnet_eval.scheduler import Resources, Scheduler
from hrnet_eval.store import ShardStore
from hrnet_eval.timing import format_steps
from hrnet_eval.weights import WeightsError, resolve


class RowsStopped(EvalError):
    """Rows that stopped (non-finite logits) while the others finished; results were
    written for what finished."""


def check_output(output):
    """Create folder `output` if missing and check that the result files can be written
    there; returns the folders it created (outermost first)."""
    created = [p for p in (output, *output.parents) if not os.path.lexists(p)][::-1]
    try:
        make_private(output)  # new folders 0700: only this user writes what is read back
        with tempfile.TemporaryFile(dir=output):
            pass
    except (FileExistsError, NotADirectoryError):
        remove_created(created)
        raise DataError(f"--output {output} is a file, not a folder: give a folder.") from None
    except OSError as exc:
        remove_created(created)
        raise DataError(
            f"--output {output} cannot be written ({exc.strerror}): give a writable folder."
        ) from None
    for name in results.RESULT_FILES:
        path = output / name
        if os.path.lexists(path) and not path.is_file():
            remove_created(created)
            raise DataError(
                f"--output {output} holds {name} as something other than a file (a folder?): "
                f"the results could not be written there; move it away or give another --output."
            )
    return created


def remove_created(created):
    """Remove the folders `check_output` created, innermost first, where still empty."""
    for path in reversed(created):
        try:
            path.rmdir()
        except OSError:
            return


def rows_per_worker(presets, sizing, nodes_memory, given=None):
    """`given` (--rows-per-worker), else: GPU workers hold every row of `presets`; CPU workers
    the rows that fit their share of host memory (`cluster`'s rule fitted to measured peaks)."""
    if given:
        return given
    if sizing.gpus_per_worker > 0:
        return len(presets)
    budget = cluster.MEMORY_SHARE * nodes_memory / max(1, sizing.workers)
    used, fit = cluster.WORKER_BASE_BYTES, 0
    # Largest rows first: any group of `fit` rows then fits, whichever rows it holds.
    for preset in sorted(presets, key=lambda p: p.params, reverse=True):
        used += cluster.WORKER_BYTES_PER_PARAM * preset.params
        if used > budget:
            break
        fit += 1
    return max(1, fit)


def resolve_all(models, config, out=print):
    """The rows' `ModelSpec`s, their files hashed in threads (hashlib lets go of the GIL;
    downloads and conversions still go one at a time); the first failing row in `models`'
    order raises."""

    if config.no_download:  # every missing row at once, before any conversion
        from hrnet_keras.checkpoints.missing import describe_missing, missing_weights

        missing = missing_weights(models, config.weights_dir)
        if missing:
            raise WeightsError(describe_missing(missing, config.weights_dir))

    def one(model):
        return resolve(
            model,
            config.weights_dir,
            allow_download=not config.no_download,
            compile_cache=config.compile_cache,
            out=out,
        )

    with concurrent.futures.ThreadPoolExecutor(min(len(models), os.cpu_count() or 1)) as pool:
        return list(pool.map(one, models))


def run(config, out=print):
    """Evaluate the rows of `config` (an `EvalConfig`); returns the result rows. Raises the
    package's errors (`hrnet_eval.errors.EvalError`)."""
    return Job(config, out).run()


class Job:
    """One evaluation of `config`: its dataset, rows (`specs`), `plan`, shard `store` and
    `output` folder, and each row's records (`done`: reused, then scored), filled in as
    `run` goes: prepare, check what is stored, dispatch, write the results."""

    def __init__(self, config, out=print):
        self.config, self.out = config, out
        self.began = time.monotonic()
        self.output = Path(config.output).expanduser().resolve()
        self.store = ShardStore(self.output)
        self.banner = self.dataset = self.specs = self.plan = self.early = None
        self.done = {}  # row -> records, reused then scored
        self.joined = False  # joined the cluster
        self.timing, self.failed = {}, {}  # where the time went; rows stopped, and why

    def say(self, line):
        self.out(line, flush=True)

    def run(self):
        """Evaluate; returns the result rows."""
        created = check_output(self.output)
        try:
            self.prepare()
            try:
                self.check_stored()
                if self.plan.units_left:
                    self.dispatch()
                return self.finish()
            finally:
                if self.early is not None:
                    self.early.stop()
        except BaseException:
            remove_created(created)  # a run refused before any work leaves no folder behind
            raise

    def prepare(self):
        """The data set, the rows' specs and the plan; early builds started."""
        config, models = self.config, self.config.models
        if config.demo:
            data_path = demo.write_demo_data(self.output / "demo-data")
            self.dataset = load_dataset(data_path, limit=config.limit)
            self.banner = demo.banner(models, len(self.dataset))
            self.say(self.banner)
            self.specs = {m: demo.random_spec(m) for m in models}
        else:
            self.dataset = load_dataset(
                config.data,
                labels_file=config.labels,
                limit=config.limit,
                connect=self.connect,  # an index of tar / TFRecord objects is built on the cluster
            )
            self.specs = dict(zip(models, resolve_all(models, config, self.out)))
        self.say(f"data: {self.dataset.root} ({self.dataset.layout}), {len(self.dataset)} images")
        if self.joined:  # joined to index the data
            self.check_nodes()
        for note in self.dataset.notes:
            self.say(f"note: {note}")
        self.plan = make_plan(
            self.dataset,
            self.store,
            self.specs,
            backend=config.backend,
            shard_size=config.shard_size,
            skip_corrupt=config.skip_corrupt,
            reuse=not config.demo,
        )
        if config.demo:
            self.say("demo: the photos are scored again on every run (stored shards not reused)")
        self.early = start_early_builds(config, self.specs, self.plan, self.out)

    def check_stored(self):
        """Stored shards are trusted on their images' bytes (hashed on the cluster); then
        the plan is logged."""
        if any(self.plan.done.values()):
            self.connect()
            began = time.monotonic()
            self.plan = self.plan.verify()
            seconds = time.monotonic() - began
            self.say(f"checked the bytes of {self.plan.hashed} stored images in {seconds:.1f} s")
        self.done = {row: list(records) for row, records in self.plan.done.items()}
        left = collections.Counter(row for rows in self.plan.shards.values() for row in rows)
        for model in self.config.models:
            done = self.done[model]
            resumed = f", {len(done)} already done in {self.store.root / model}" if done else ""
            self.say(
                f"{model}: {len(done) + left[model]} shards of up to {self.config.shard_size} "
                f"images{resumed}"
            )
        if self.plan.redo:
            why = ", ".join(f"{n} because {reason}" for reason, n in self.plan.redo.most_common())
            self.say(f"stored shards not reused: {why}")

    def connect(self):
        """Join the cluster (once), its nodes checked once the data is known; returns the
        seconds it took."""
        if self.joined:
            return 0.0
        began = time.monotonic()
        self.say(cluster.connect(self.config.address, num_cpus=self.config.local_cpus))
        self.joined = True
        self.check_nodes()
        return time.monotonic() - began

    def check_nodes(self):
        """On a cluster joined by address, each node's local paths (`nodes.check_nodes`)."""
        if self.dataset is None or not cluster.cluster_address(self.config.address):
            return
        nodes.check_nodes(self.dataset.root, self.config.compile_cache)

    def dispatch(self):
        """Run the units left on the cluster, then collect what the early builds built."""
        config, prepared = self.config, time.monotonic() - self.began
        connected = 0.0 if self.joined else self.connect()
        nodes = cluster.node_resources()
        sizing = cluster.size_workers(
            config.workers,
            config.gpus_per_worker,
            config.cpus_per_worker,
            nodes=nodes,
            units=self.plan.units_left,
            memory=cluster.node_memory(),
            rows=config.models,
        )
        presets = [spec.preset for spec in self.specs.values()]
        fit = rows_per_worker(presets, sizing, cluster.node_memory(), config.rows_per_worker)
        groups = row_groups(config.models, fit)
        workers, gpus, cpus = sizing.workers, sizing.gpus_per_worker, sizing.cpus_per_worker
        kind = f"{gpus:g} GPU" if gpus else "CPU only"
        self.say(
            f"{workers} worker(s) ({kind}, {cpus:g} CPUs each; up to {len(groups[0])} rows "
            f"each); {sizing.decode_tasks} decode task(s) at a time; cluster: {len(nodes)} "
            f"node(s), {sum(g for _, g in nodes):g} GPUs, {sum(c for c, _ in nodes):g} CPUs; "
            f"backend {config.backend}, batch {config.batch_size}"
        )
        progress = Progress(
            totals={m: len(self.dataset) for m in config.models},
            done={m: sum(r["end"] - r["start"] for r in self.done[m]) for m in config.models},
            records=self.done,
            interval=config.progress_seconds,
            out=self.out,
        )

        def on_result(row, shard, scored):
            unit = Unit(row, shard)
            self.done[row].append(self.store.save(unit, self.plan.key(unit), scored.record(row)))
            progress.add(row, shard.size, self.done[row][-1])

        resources = Resources(
            workers=workers,
            actor_options={"num_cpus": cpus, "num_gpus": gpus, "max_restarts": 0},
            worker=WorkerConfig(  # the worker sets its own environment: no runtime_env
                backend=config.backend,
                batch_size=config.batch_size,
                compile_cache=config.compile_cache,
                env=cluster.worker_env(config.backend, gpus, config.compile_cache, sizing.threads),
                # the build tasks too: in an idle worker, which leaves after its one build
                builder_env=cluster.builder_env(),
                builder_cpus=sizing.builder_cpus,
                files_node=current_node(),  # the weights files are on its disk
            ),
            # no runtime_env: decoding imports no framework, so it runs in Ray's idle workers
            decode_options={"num_cpus": sizing.decode_task_cpus},
            decode_tasks=sizing.decode_tasks,
            place_decodes=config.decode_placement == "worker-node",
            worker_wait_seconds=config.worker_wait_seconds,
        )
        scheduler = Scheduler(
            specs=self.specs,
            items=self.dataset.items,
            shards=self.plan.shards,
            groups=groups,
            resources=resources,
            on_result=on_result,
            skip_corrupt=config.skip_corrupt,
            log=self.out,
        )
        scheduler.run()
        self.failed = scheduler.failed
        self.timing = {
            "prepare_s": round(prepared, 2),  # data listed, weights checked, shards planned
            "workers": workers,
            "connect_s": round(connected, 2),
            **scheduler.timing(),
        }
        self.report_early_builds()
        self.report_timing()

    def report_early_builds(self):
        if self.early is None:
            return
        built = self.early.close()
        for note in self.early.notes:
            self.say(f"note: {note}")
        if built:
            self.timing["early_builds"] = built
            for row, steps in built.items():
                self.say(f"{row}: built beside the cluster's start ({format_steps(steps)} s)")

    def report_timing(self):
        timing = self.timing
        if "evaluating_s" not in timing:
            return
        self.say(
            f"timing: joined the cluster in {timing['connect_s']:.1f} s; first row ready "
            f"{timing['first_worker_ready_s']:.1f} s later, every row "
            f"{timing['last_worker_ready_s']:.1f} s (actor start, programs built or read, "
            f"compile); then {timing['images']} images x rows in "
            f"{timing['evaluating_s']:.1f} s = {timing['images_per_second']:.2f} images/s "
            f"on {timing['workers']} worker(s); {timing['decoded_images']} images decoded, "
            f"{timing['decoded_twice']} of them a second time; "
            f"{timing['bytes_between_nodes'] / 1e6:.1f} of the {timing['scored_bytes'] / 1e6:.1f} "
            "MB of decoded images the workers read came from another node"
        )

    def finish(self):
        """Write the result files and the summary; raises `RowsStopped` if rows stopped."""
        config = self.config
        meta = {
            "data": str(self.dataset.root),
            "layout": self.dataset.layout,
            "images": len(self.dataset),
            "backend": config.backend,
            "shard_size": config.shard_size,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "banner": self.banner,
            "timing": self.timing,
        }
        rows = [
            results.make_row(
                m,
                self.done[m],
                backend=config.backend,
                spec=self.specs[m],
                failed=self.failed.get(m),
            )
            for m in config.models
        ]
        paths = results.write(self.output, rows, meta)
        for line in results.summary_lines(rows):
            self.say(line)
        for row in rows:
            for where, reason in row["skipped"]:
                self.say(f"skipped ({row['name']}): {reason}")
            if row["skipped"]:
                self.say(
                    f"{row['name']}: {len(row['skipped'])} images skipped; accuracies are over "
                    f"the {row['images']} images evaluated"
                )
        elapsed = format_duration(time.monotonic() - self.began)
        self.say(f"wrote {', '.join(str(p) for p in paths)} in {elapsed}")
        if self.banner:
            self.say(self.banner)
        if self.failed:
            raise RowsStopped(
                "; ".join(f"{m}: {why}" for m, why in self.failed.items())
                + f" (the other rows' results are in {self.output})"
            )
        return rows


def start_early_builds(config, specs, plan, out=print):
    """`prebuild.EarlyBuilds` of the programs this job's JAX workers would build, where the
    job starts its own local cluster (its workers then run on this node), else None."""
    local = cluster.cluster_address(config.address) is None
    if not (local and config.backend == "jax" and config.compile_cache and plan.units_left):
        return None
    groups = prebuild.candidates(specs, plan.rows_left(), config.compile_cache, config.batch_size)
    if not groups:
        return None
    early = prebuild.EarlyBuilds(
        groups, config.compile_cache, config.batch_size, cluster.builder_env()
    )
    rows = ", ".join(spec.name for group in groups for spec in group)
    out(f"building {rows} beside the cluster's start ({early.processes} process(es))", flush=True)
    return early
