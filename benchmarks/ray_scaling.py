"""Benchmark: 2 Ray CPU workers against 1 on the same shards, and a job's fixed cost.

Runs the real CLI twice on a private local Ray cluster (2 CPUs), W18 with
seeded random weights saved as a `.weights.h5`, JPEGs at ImageNet sizes:
`--workers 1 --cpus-per-worker 1` then `--workers 2 --cpus-per-worker 1`.
Each worker computes on one thread, so the second run has twice the CPUs.
Reads each run's `results.json` timing: evaluation images/s counts from the
first worker ready to the last shard; fixed cost is joining the cluster plus
the first worker's start, weights load and compile.

    .venv/bin/python benchmarks/ray_scaling.py [--backend jax] [--images 96]
"""

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="jax", choices=("jax", "tensorflow", "torch"))
    parser.add_argument("--model", default="hrnet-w18")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=8)
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args()

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = common.write_jpegs(os.path.join(tmp, "val"), args.images)
        weights = common.write_random_weights(args.model, os.path.join(tmp, "weights"))
        for workers in (1, 2):
            argv = ["--models", args.model, "--data", str(data), "--weights-dir", str(weights.parent),
                    "--no-download", "--backend", args.backend, "--workers", str(workers),
                    "--cpus-per-worker", "1", "--local-cpus", "2", "--batch-size", str(args.batch_size),
                    "--shard-size", str(args.shard_size), "--compile-cache", os.path.join(tmp, "jax-cache")]
            wall, results, _ = common.run_evaluator(argv, os.path.join(tmp, f"out{workers}"))
            timing = dict(results["timing"], job_wall_s=round(wall, 2))
            runs[workers] = timing
            print(f"{workers} worker(s): {timing['images']} images at {timing['images_per_second']:.2f} "
                  f"images/s; joined cluster {timing['connect_s']:.1f} s, first worker ready "
                  f"{timing['first_worker_ready_s']:.1f} s after, last {timing['last_worker_ready_s']:.1f} s; "
                  f"whole command {wall:.1f} s", flush=True)
    speedup = runs[2]["images_per_second"] / runs[1]["images_per_second"]
    print(f"scaling 2 workers / 1: {speedup:.2f}x", flush=True)
    common.write_json(args.json, backend=args.backend, runs=runs, speedup=speedup)


if __name__ == "__main__":
    main()
