"""Benchmark: 2 Ray CPU workers against 1 on the same shards, and a job's fixed cost.

Runs the real CLI twice on a private local Ray cluster (2 CPUs), W18 with
seeded random weights saved as a `.weights.h5`, JPEGs at ImageNet sizes:
`--workers 1` then `--workers 2`, each worker with `--cpus-per-worker 0.75` (so two
workers leave half a CPU of Ray's resources to the decode tasks) and one compute
thread, so the second run has twice the cores.
Reads each run's `results.json` timing: evaluation images/s counts from the
first worker ready to the last shard; fixed cost is joining the cluster plus
the first worker's start, weights load and compile. Reference in the same
run: the machine's own ceiling, the model alone (no Ray, no decoding) on one
thread in one process against two such processes at once.

    .venv/bin/python benchmarks/ray_scaling.py [--backend torch] [--images 96]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402


def model_only(backend, model, batch, seconds):
    """Images/s of one single-threaded process running the worker's model, no decoding."""
    import numpy as np

    from hrnet_eval.config import WorkerConfig
    from hrnet_eval.demo import random_spec
    from hrnet_eval.worker import EvalWorker

    worker = EvalWorker(WorkerConfig(backend=backend, batch_size=batch))
    worker.load(random_spec(model))
    x = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype="uint8")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()  # start together
    began, images = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        worker.top5(model, x)
        images += batch
    print(json.dumps({"images_per_second": images / (time.perf_counter() - began)}), flush=True)


def ceiling(args, processes):
    """Summed images/s of `processes` concurrent single-threaded model-only processes."""
    from hrnet_eval.cluster import worker_env

    env = dict(os.environ, **worker_env(args.backend, 0, None, 1))
    argv = [
        sys.executable,
        __file__,
        "--model-only",
        "--backend",
        args.backend,
        "--model",
        args.model,
        "--batch-size",
        str(args.batch_size),
    ]
    procs = [
        subprocess.Popen(argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    for p in procs:
        while p.stdout.readline().strip() != "ready":
            if p.poll() is not None:
                sys.exit("the model-only process failed")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    rates = [
        json.loads(p.communicate()[0].strip().splitlines()[-1])["images_per_second"] for p in procs
    ]
    return sum(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="torch", choices=("jax", "tensorflow", "torch"))
    parser.add_argument("--model", default="hrnet-w18")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each ceiling run")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--model-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_only:
        return model_only(args.backend, args.model, args.batch_size, args.seconds)

    one, two = ceiling(args, 1), ceiling(args, 2)
    print(
        f"machine ceiling, model only on one thread: 1 process {one:.2f} images/s, "
        f"2 processes {two:.2f} images/s = {two / one:.2f}x",
        flush=True,
    )

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = common.write_jpegs(os.path.join(tmp, "val"), args.images)
        weights = common.write_random_weights(args.model, os.path.join(tmp, "weights"))
        for workers in (1, 2):
            argv = [
                "--models",
                args.model,
                "--data",
                str(data),
                "--weights-dir",
                str(weights.parent),
                "--no-download",
                "--backend",
                args.backend,
                "--workers",
                str(workers),
                "--cpus-per-worker",
                "0.75",
                "--local-cpus",
                "2",
                "--batch-size",
                str(args.batch_size),
                "--shard-size",
                str(args.shard_size),
                "--compile-cache",
                os.path.join(tmp, "jax-cache"),
            ]
            wall, results, _ = common.run_evaluator(argv, os.path.join(tmp, f"out{workers}"))
            timing = dict(results["timing"], job_wall_s=round(wall, 2))
            runs[workers] = timing
            print(
                f"{workers} worker(s): {timing['images']} images at {timing['images_per_second']:.2f} "
                f"images/s; joined cluster {timing['connect_s']:.1f} s, first worker ready "
                f"{timing['first_worker_ready_s']:.1f} s after, last {timing['last_worker_ready_s']:.1f} s; "
                f"whole command {wall:.1f} s",
                flush=True,
            )
    speedup = runs[2]["images_per_second"] / runs[1]["images_per_second"]
    print(
        f"scaling 2 workers / 1: {speedup:.2f}x (the machine's own ceiling: {two / one:.2f}x)",
        flush=True,
    )
    common.write_json(
        args.json,
        backend=args.backend,
        runs=runs,
        speedup=speedup,
        ceiling={"one_process": one, "two_processes": two, "speedup": two / one},
    )


if __name__ == "__main__":
    main()
