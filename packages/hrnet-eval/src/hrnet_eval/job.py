"""One evaluation job: data, weights, plan against the shard store, dispatch, results."""

import collections
import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from hrnet_eval import cluster, demo, prebuild, resume, results
from hrnet_eval.data import DataError, load_dataset, shards
from hrnet_eval.errors import EvalError
from hrnet_eval.progress import Progress, format_duration
from hrnet_eval.policy import row_groups
from hrnet_eval.scheduler import Resources, Scheduler
from hrnet_eval.store import RECORD_FORMAT, ShardStore, Unit
from hrnet_eval.timing import format_steps
from hrnet_eval.weights import WeightsError, resolve


class RowsStopped(EvalError):
    """Rows that stopped (non-finite logits) while the others finished; results were
    written for what finished."""


def content_stamp(items):
    """sha1 over each image file's (or container's) size and modification time (ns):
    an image changed in place changes the stamp. Raises DataError for a missing file."""
    digest = hashlib.sha1()
    for source in dict.fromkeys(item.source for item in items):
        try:
            stat = os.stat(source)
        except OSError as exc:
            raise DataError(f"Cannot read {source}: {exc.strerror}.") from None
        digest.update(f"{source}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def shard_key(dataset, start, end, backend):
    """What a stored shard must have been made from to be reused, but the row's weights
    and preprocessing (`Plan.key` adds them)."""
    return {
        "format": RECORD_FORMAT,
        "data": dataset.fingerprint(start, end),
        "files": content_stamp(dataset.items[start:end]),
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


@dataclasses.dataclass
class Plan:
    """What is stored and what is left, per shard: `shards` maps each (start, end) to the
    rows that still have to score it (in row order); `done` maps each row to its reused
    records; `redo` counts why stored shards were not reused."""

    rows: tuple
    shards: dict  # (start, end) -> [rows to run], every shard in data order
    done: dict  # row -> [stored records]
    redo: collections.Counter
    keys: dict  # (start, end) -> the key of `shard_key`, without the row's parts
    rows_keys: dict  # row -> {"weights": ModelSpec.key, "preprocessing": its pipeline}

    def key(self, unit):
        """The key `unit` is stored under."""
        return {**self.keys[unit.start, unit.end], **self.rows_keys[unit.model]}

    def pending(self):
        """{row: [Unit]} of the units left, in data order."""
        left = {row: [] for row in self.rows}
        for (start, end), rows in self.shards.items():
            for row in rows:
                left[row].append(Unit(row, start, end))
        return left

    def reopen(self, pending):
        """Run again the units of `pending` ({row: [Unit]}), e.g. those `resume.verify`
        took back from `done`."""
        for units in pending.values():
            for unit in units:
                rows = self.shards[unit.start, unit.end]
                if unit.model not in rows:
                    rows.append(unit.model)
                    rows.sort(key=self.rows.index)

    @property
    def units_left(self):
        return sum(map(len, self.shards.values()))


def plan(dataset, store, specs, *, backend, shard_size, skip_corrupt, reuse=True):
    """The `Plan` of evaluating every row of `specs` ({row: ModelSpec}, in order) on
    `dataset` in shards of `shard_size`, reusing what `store` holds under the same key
    (unless `reuse` is false)."""
    rows = tuple(specs)
    keys = {
        (start, end): shard_key(dataset, start, end, backend)
        for start, end in shards(len(dataset), shard_size)
    }  # each image file is stat'ed once, whatever the number of rows
    result = Plan(
        rows=rows,
        shards={shard: [] for shard in keys},
        done={row: [] for row in rows},
        redo=collections.Counter(),
        keys=keys,
        rows_keys={
            row: {"weights": spec.key, "preprocessing": preprocessing_key(spec)}
            for row, spec in specs.items()
        },
    )
    for row in rows:
        for start, end in keys:
            unit = Unit(row, start, end)
            record, mismatch = store.lookup(unit, result.key(unit)) if reuse else (None, None)
            if record is not None and record["skipped"] and not skip_corrupt:
                record, mismatch = None, "it skipped images (no --skip-corrupt now)"
            if record is not None:
                result.done[row].append(record)
            else:
                result.shards[start, end].append(row)
                if mismatch:
                    result.redo[REASONS.get(mismatch, mismatch)] += 1
    return result


def check_output(output):
    """Create folder `output` if missing and check that the result files can be written
    there; returns the folders it created (outermost first)."""
    created = [p for p in (output, *output.parents) if not os.path.lexists(p)][::-1]
    try:
        output.mkdir(parents=True, exist_ok=True)
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
            program_cache=config.compile_cache,
            out=out,
        )

    with concurrent.futures.ThreadPoolExecutor(min(len(models), os.cpu_count() or 1)) as pool:
        return list(pool.map(one, models))


def run(config, out=print):
    """Evaluate the rows of `config` (an `EvalConfig`); returns the result rows. Raises the
    package's errors (`hrnet_eval.errors.EvalError`)."""
    began = time.monotonic()
    output = Path(config.output).expanduser().resolve()
    created = check_output(output)
    try:
        return _run(config, output, began, out)
    except BaseException:
        remove_created(created)  # a run refused before any work leaves no folder behind
        raise


def _run(config, output, began, out):
    banner = None
    models = config.models
    if config.demo:
        data_path = demo.write_demo_data(output / "demo-data")
        dataset = load_dataset(data_path, limit=config.limit)
        banner = demo.banner(models, len(dataset))
        out(banner, flush=True)
        specs = {m: demo.random_spec(m) for m in models}
    else:
        dataset = load_dataset(config.data, labels_file=config.labels, limit=config.limit)
        specs = dict(zip(models, resolve_all(models, config, out)))
    out(f"data: {dataset.root} ({dataset.layout}), {len(dataset)} images", flush=True)
    for note in dataset.notes:
        out(f"note: {note}", flush=True)

    store = ShardStore(output)
    todo = plan(
        dataset,
        store,
        specs,
        backend=config.backend,
        shard_size=config.shard_size,
        skip_corrupt=config.skip_corrupt,
        reuse=not config.demo,
    )
    if config.demo:
        out("demo: the photos are scored again on every run (stored shards not reused)", flush=True)
    early = start_early_builds(config, specs, todo, out)
    try:
        return _finish(config, dataset, specs, todo, store, output, banner, began, out, early)
    finally:
        if early is not None:
            early.stop()


def start_early_builds(config, specs, todo, out=print):
    """`prebuild.EarlyBuilds` of the programs this job's JAX workers would build, where the
    job starts its own local cluster (its workers then run on this node), else None."""
    local = cluster.cluster_address(config.address) is None
    if not (local and config.backend == "jax" and config.compile_cache and todo.units_left):
        return None
    groups = prebuild.candidates(specs, todo.pending(), config.compile_cache)
    if not groups:
        return None
    early = prebuild.EarlyBuilds(groups, config.compile_cache, cluster.builder_env())
    rows = ", ".join(spec.name for group in groups for spec in group)
    out(f"building {rows} beside the cluster's start ({early.processes} process(es))", flush=True)
    return early


def _finish(config, dataset, specs, todo, store, output, banner, began, out, early):
    """`_run` from the plan on: stored shards checked, the rest dispatched, results."""
    models = config.models
    done = todo.done
    joined = any(done.values())
    if joined:  # stored shards are trusted on their images' bytes: hashed on the cluster
        out(cluster.connect(config.address, num_cpus=config.local_cpus), flush=True)
        reopened = {m: [] for m in models}
        hashed, seconds = resume.verify(dataset.items, done, reopened, todo.redo)
        todo.reopen(reopened)
        out(f"checked the bytes of {hashed} stored images in {seconds:.1f} s", flush=True)
    pending = todo.pending()
    for model in models:
        n_units = len(done[model]) + len(pending[model])
        resumed = (
            f", {len(done[model])} already done in {store.root / model}" if done[model] else ""
        )
        out(f"{model}: {n_units} shards of up to {config.shard_size} images{resumed}", flush=True)
    if todo.redo:
        why = ", ".join(f"{n} because {reason}" for reason, n in todo.redo.most_common())
        out(f"stored shards not reused: {why}", flush=True)

    timing, failed = {}, {}
    if todo.units_left:
        prepared = time.monotonic() - began  # data listed, weights checked, shards planned
        timing, failed = _dispatch(config, dataset, specs, todo, store, out, joined, early)
        timing = {"prepare_s": round(prepared, 2), **timing}

    meta = {
        "data": str(dataset.root),
        "layout": dataset.layout,
        "images": len(dataset),
        "backend": config.backend,
        "shard_size": config.shard_size,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "banner": banner,
        "timing": timing,
    }
    rows = [
        results.make_row(m, done[m], backend=config.backend, spec=specs[m], failed=failed.get(m))
        for m in models
    ]
    paths = results.write(output, rows, meta)
    for line in results.summary_lines(rows):
        out(line, flush=True)
    for row in rows:
        for where, reason in row["skipped"]:
            out(f"skipped ({row['name']}): {reason}", flush=True)
        if row["skipped"]:
            out(
                f"{row['name']}: {len(row['skipped'])} images skipped; accuracies are over "
                f"the {row['images']} images evaluated",
                flush=True,
            )
    out(
        f"wrote {', '.join(str(p) for p in paths)} in {format_duration(time.monotonic() - began)}",
        flush=True,
    )
    if banner:
        out(banner, flush=True)
    if failed:
        raise RowsStopped(
            "; ".join(f"{m}: {why}" for m, why in failed.items())
            + f" (the other rows' results are in {output})"
        )
    return rows


def _dispatch(config, dataset, specs, todo, store, out, joined=False, early=None):
    """Run the units left in `todo` (a `Plan`) on the cluster, given the first worker's
    target to `early` (`prebuild.EarlyBuilds`, or None); returns (where the time went in
    seconds, {row: why it stopped})."""
    began = time.monotonic()
    if not joined:  # job.run joined already (to check stored shards)
        out(cluster.connect(config.address, num_cpus=config.local_cpus), flush=True)
    connected = time.monotonic() - began
    nodes = cluster.node_resources()
    sizing = cluster.size_workers(
        config.workers,
        config.gpus_per_worker,
        config.cpus_per_worker,
        nodes=nodes,
        units=todo.units_left,
        memory=cluster.node_memory(),
        rows=config.models,
    )
    presets = [spec.preset for spec in specs.values()]
    fit = rows_per_worker(presets, sizing, cluster.node_memory(), config.rows_per_worker)
    groups = row_groups(config.models, fit)
    workers, gpus, cpus = sizing.workers, sizing.gpus_per_worker, sizing.cpus_per_worker
    kind = f"{gpus:g} GPU" if gpus else "CPU only"
    out(
        f"{workers} worker(s) ({kind}, {cpus:g} CPUs each; up to {len(groups[0])} rows each); "
        f"{sizing.decode_tasks} decode task(s) at a time; cluster: {len(nodes)} node(s), "
        f"{sum(g for _, g in nodes):g} GPUs, {sum(c for c, _ in nodes):g} CPUs; "
        f"backend {config.backend}, batch {config.batch_size}",
        flush=True,
    )

    done = todo.done
    progress = Progress(
        totals={m: len(dataset) for m in config.models},
        done={m: sum(r["end"] - r["start"] for r in done[m]) for m in config.models},
        interval=config.progress_seconds,
        out=out,
    )

    def on_result(row, shard, scored):
        unit = Unit(row, shard.start, shard.end)
        done[row].append(store.save(unit, todo.key(unit), scored.record(row)))
        progress.add(row, unit.size)

    resources = Resources(
        workers=workers,
        actor_options={
            "num_cpus": cpus,
            "num_gpus": gpus,
            "max_restarts": 0,
        },
        worker_options={  # the worker sets its own environment: no runtime_env, no new process
            "env": cluster.worker_env(config.backend, gpus, config.compile_cache, sizing.threads),
            "backend": config.backend,
            "batch_size": config.batch_size,
            "cache_dir": config.compile_cache,
            # the build tasks too: in an idle worker, which leaves after its one build
            "builder_options": {"num_cpus": 1},
            "builder_env": cluster.builder_env(),
        },
        # no runtime_env: decoding imports no framework, so it runs in Ray's idle workers
        decode_options={"num_cpus": sizing.decode_task_cpus},
        decode_tasks=sizing.decode_tasks,
    )
    scheduler = Scheduler(
        specs=specs,
        items=dataset.items,
        pending=todo.pending(),
        groups=groups,
        resources=resources,
        on_result=on_result,
        skip_corrupt=config.skip_corrupt,
        log=out,
        on_worker=early.feed if early is not None else None,
    )
    scheduler.run()
    timing = {"workers": workers, "connect_s": round(connected, 2), **scheduler.timing()}
    if early is not None:
        built = early.close()
        for note in early.notes:
            out(f"note: {note}", flush=True)
        if built:
            timing["early_builds"] = built
            for row, steps in built.items():
                out(
                    f"{row}: built beside the cluster's start ({format_steps(steps)} s)", flush=True
                )
    if "evaluating_s" in timing:
        out(
            f"timing: joined the cluster in {timing['connect_s']:.1f} s; first row ready "
            f"{timing['first_worker_ready_s']:.1f} s later, every row "
            f"{timing['last_worker_ready_s']:.1f} s (actor start, programs built or read, "
            f"compile); then {timing['images']} images x rows in "
            f"{timing['evaluating_s']:.1f} s = {timing['images_per_second']:.2f} images/s "
            f"on {workers} worker(s); {timing['decoded_images']} images decoded, "
            f"{timing['decoded_twice']} of them a second time",
            flush=True,
        )
    failed = scheduler.failed
    return timing, failed
