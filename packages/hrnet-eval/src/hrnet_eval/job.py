"""One evaluation job: data, weights, plan against the shard store, dispatch, results."""

import collections
import dataclasses
import datetime
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

from hrnet_eval import cluster, demo, resume, results
from hrnet_eval.data import DataError, load_dataset, shards
from hrnet_eval.progress import Progress, format_duration
from hrnet_eval.policy import row_groups
from hrnet_eval.scheduler import EvalError, Scheduler
from hrnet_eval.store import ShardStore, Unit
from hrnet_eval.weights import resolve


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
    """What a stored shard must have been made from to be reused, but the weights
    (`plan` adds each row's)."""
    from hrnet_keras.configs import TEST_PIPELINE

    return {
        "data": dataset.fingerprint(start, end),
        "files": content_stamp(dataset.items[start:end]),
        "backend": backend,
        # As stored: JSON turns the pipeline's tuples into lists.
        "preprocessing": json.loads(json.dumps(dataclasses.asdict(TEST_PIPELINE))),
    }


REASONS = {  # key field that differs -> why a stored shard is not reused
    "data": "other images or labels",
    "files": "images changed on disk",
    "weights": "other weights",
    "backend": "another backend",
    "preprocessing": "another preprocessing",
}


def plan(models, dataset, store, specs, backend, shard_size, skip_corrupt):
    """({model: finished records}, {model: units to run}, {unit: key}, Counter of reasons
    why stored shards were not reused)."""
    done, pending, keys = {}, {}, {}
    redo = collections.Counter()
    shard_keys = {
        (start, end): shard_key(dataset, start, end, backend)
        for start, end in shards(len(dataset), shard_size)
    }  # each image file is stat'ed once, whatever the number of rows
    for model in models:
        done[model], pending[model] = [], []
        for (start, end), key in shard_keys.items():
            unit = Unit(model, start, end)
            keys[unit] = {**key, "weights": specs[model].key}
            record, mismatch = store.lookup(unit, keys[unit])
            if record is not None and record["skipped"] and not skip_corrupt:
                record, mismatch = None, "it skipped images (no --skip-corrupt now)"
            if record is not None:
                done[model].append(record)
            else:
                pending[model].append(unit)
                if mismatch:
                    redo[REASONS.get(mismatch, mismatch)] += 1
    return done, pending, keys, redo


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


def rows_per_worker(args, sizing, nodes_memory):
    """--rows-per-worker, else: GPU workers hold every row; CPU workers the rows that
    fit their share of host memory by a rule fitted to measured peaks (a worker takes
    about 2.2 GiB, plus about 6x each row's fp32 weights)."""
    from hrnet_keras.configs import get_preset

    if args.rows_per_worker:
        return args.rows_per_worker
    if sizing.gpus_per_worker > 0:
        return len(args.models)
    budget = 0.8 * nodes_memory / max(1, sizing.workers)
    used, fit = 2.2 * 2**30, 0
    # Largest rows first: any group of `fit` rows then fits, whichever rows it holds.
    for model in sorted(args.models, key=lambda m: get_preset(m).params, reverse=True):
        used += 6 * 4 * get_preset(model).params
        if used > budget:
            break
        fit += 1
    return max(1, fit)


def run(args, out=print):
    """Evaluate `args.models`; returns the result rows. Raises the package's errors."""
    began = time.monotonic()
    output = Path(args.output).expanduser().resolve()
    created = check_output(output)
    try:
        return _run(args, output, began, out)
    except BaseException:
        remove_created(created)  # a run refused before any work leaves no folder behind
        raise


def _run(args, output, began, out):
    banner = None
    if args.demo:
        data_path = demo.write_demo_data(output / "demo-data")
        dataset = load_dataset(data_path, limit=args.limit)
        banner = demo.banner(args.models, len(dataset))
        out(banner, flush=True)
        specs = {m: demo.random_spec(m) for m in args.models}
    else:
        dataset = load_dataset(args.data, labels_file=args.labels, limit=args.limit)
        specs = {
            m: resolve(m, args.weights_dir, allow_download=not args.no_download)
            for m in args.models
        }
    out(f"data: {dataset.root} ({dataset.layout}), {len(dataset)} images", flush=True)
    for note in dataset.notes:
        out(f"note: {note}", flush=True)

    store = ShardStore(output)
    done, pending, keys, redo = plan(
        args.models, dataset, store, specs, args.backend, args.shard_size, args.skip_corrupt
    )
    joined = any(done.values())
    if joined:  # stored shards are trusted on their images' bytes: hashed on the cluster
        out(cluster.connect(args.address, num_cpus=args.local_cpus), flush=True)
        hashed, seconds = resume.verify(dataset.items, done, pending, redo)
        out(f"checked the bytes of {hashed} stored images in {seconds:.1f} s", flush=True)
    for model in args.models:
        n_units = len(done[model]) + len(pending[model])
        resumed = (
            f", {len(done[model])} already done in {store.root / model}" if done[model] else ""
        )
        out(f"{model}: {n_units} shards of up to {args.shard_size} images{resumed}", flush=True)
    if redo:
        why = ", ".join(f"{n} because {reason}" for reason, n in redo.most_common())
        out(f"stored shards not reused: {why}", flush=True)

    units_left = sum(len(u) for u in pending.values())
    timing, failed = {}, {}
    if units_left:
        timing, failed = _dispatch(
            args, dataset, specs, done, pending, keys, store, units_left, out, joined
        )

    meta = {
        "data": str(dataset.root),
        "layout": dataset.layout,
        "images": len(dataset),
        "backend": args.backend,
        "shard_size": args.shard_size,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "banner": banner,
        "timing": timing,
    }
    rows = [
        results.make_row(m, done[m], backend=args.backend, spec=specs[m], failed=failed.get(m))
        for m in args.models
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


def _dispatch(args, dataset, specs, done, pending, keys, store, units_left, out, joined=False):
    """Run the pending units on the cluster; returns where the time went (seconds)."""
    began = time.monotonic()
    if not joined:  # job.run joined already (to check stored shards)
        out(cluster.connect(args.address, num_cpus=args.local_cpus), flush=True)
    connected = time.monotonic() - began
    nodes = cluster.node_resources()
    sizing = cluster.size_workers(
        args.workers,
        args.gpus_per_worker,
        args.cpus_per_worker,
        nodes=nodes,
        units=units_left,
        memory=cluster.node_memory(),
        rows=args.models,
    )
    groups = row_groups(args.models, rows_per_worker(args, sizing, cluster.node_memory()))
    workers, gpus, cpus = sizing.workers, sizing.gpus_per_worker, sizing.cpus_per_worker
    kind = f"{gpus:g} GPU" if gpus else "CPU only"
    out(
        f"{workers} worker(s) ({kind}, {cpus:g} CPUs each; up to {len(groups[0])} rows each); "
        f"{sizing.decode_tasks} decode task(s) at a time; cluster: {len(nodes)} node(s), "
        f"{sum(g for _, g in nodes):g} GPUs, {sum(c for c, _ in nodes):g} CPUs; "
        f"backend {args.backend}, batch {args.batch_size}",
        flush=True,
    )

    from hrnet_keras.configs import get_preset

    progress = Progress(
        totals={m: len(dataset) for m in args.models},
        done={m: sum(r["end"] - r["start"] for r in done[m]) for m in args.models},
        interval=args.progress_seconds,
        out=out,
    )

    def on_result(unit, result):
        done[unit.model].append(store.save(unit, keys[unit], result))
        progress.add(unit.model, unit.size)

    scheduler = Scheduler(
        specs=specs,
        items=dataset.items,
        pending=pending,
        groups=groups,
        work_per_image={m: get_preset(m).flops for m in args.models},
        workers=workers,
        actor_options={
            "num_cpus": cpus,
            "num_gpus": gpus,
            "max_restarts": 0,
            "runtime_env": {
                "env_vars": cluster.worker_env(
                    args.backend, gpus, args.compile_cache, sizing.threads
                )
            },
        },
        worker_options={
            "backend": args.backend,
            "batch_size": args.batch_size,
            "cache_dir": args.compile_cache,
            "builder_options": {
                "num_cpus": 1,
                "runtime_env": {"env_vars": cluster.builder_env()},
            },
        },
        decode_options={
            "num_cpus": sizing.decode_task_cpus,
            "runtime_env": {"env_vars": cluster.decode_env()},
        },
        decode_tasks=sizing.decode_tasks,
        on_result=on_result,
        skip_corrupt=args.skip_corrupt,
        log=out,
    )
    scheduler.run()
    timing = {"workers": workers, "connect_s": round(connected, 2), **scheduler.timing()}
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
