"""Benchmark: the evaluator end to end on a CPU, this checkout against a baseline checkout.

Runs the real CLI (`python -m hrnet_eval --models M --data D ...`, a private local Ray
cluster, CPU workers) of this checkout and of `--baseline` (another checkout of the
repository, e.g. `git worktree add /tmp/base <rev>`) on the same JPEGs at ImageNet sizes
and the same random weights, in interleaved rounds (baseline, this, baseline, this...),
and reports each one's images/s from its own `timing` (first worker ready to last shard)
and whole wall time, and the ratio this / baseline (median of the rounds).

    .venv/bin/python benchmarks/evaluator_throughput.py --baseline /tmp/base \\
        [--backend jax] [--model hrnet-w18] [--batch-size 32] [--images 128] [--rounds 2]
"""

import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402

ROOT = os.path.dirname(HERE)


def source_path(checkout):
    return os.pathsep.join(
        os.path.join(checkout, "packages", p, "src") for p in ("hrnet-keras", "hrnet-eval")
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", required=True, metavar="DIR", help="the other checkout")
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--model", default="hrnet-w18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE")
    args = parser.parse_args()

    checkouts = {"baseline": os.path.abspath(args.baseline), "this": ROOT}
    runs = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory() as tmp:
        data = common.write_jpegs(os.path.join(tmp, "val"), args.images, processes=2)
        weights = os.path.dirname(
            common.write_random_weights(args.model, os.path.join(tmp, "weights"))
        )
        for round_ in range(args.rounds):
            for name, checkout in checkouts.items():
                os.environ["PYTHONPATH"] = source_path(checkout)
                argv = [
                    "--models", args.model, "--data", data, "--weights-dir", weights,
                    "--no-download", "--backend", args.backend, "--batch-size",
                    str(args.batch_size), "--shard-size", str(args.shard_size),
                    "--compile-cache", os.path.join(tmp, f"cache-{name}"),
                ]  # fmt: skip
                wall, results, _ = common.run_evaluator(argv, os.path.join(tmp, f"{name}{round_}"))
                timing = results["timing"]
                row = {"wall_s": round(wall, 1), "images_per_second": timing["images_per_second"]}
                runs[name].append(row)
                print(name, round_, row, flush=True)
    summary = {
        name: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        for name, rows in runs.items()
    }
    ratio = summary["this"]["images_per_second"] / summary["baseline"]["images_per_second"]
    print(
        f"{common.machine()}: {args.model} {args.backend} batch {args.batch_size}, "
        f"{args.images} images: this/baseline images/s = {ratio:.2f}; {summary}"
    )
    common.write_json(args.json, args=vars(args), runs=runs, summary=summary, ratio=ratio)


if __name__ == "__main__":
    main()
