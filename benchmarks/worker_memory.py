"""Benchmark: peak RSS of one evaluator worker for W18 and W64 at the default batch size.

Runs the real CLI (private local Ray cluster, one CPU worker, seeded random
weights saved as `.weights.h5`, JPEGs at ImageNet sizes) and reads the peak
RSS each worker reports with its shards (`worker_peak_rss_mib` in
results.json). Reference in the same run: the size of the row's weights file.

    .venv/bin/python benchmarks/worker_memory.py [--models hrnet-w18,hrnet-w64] [--backend jax]
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
    parser.add_argument("--models", default="hrnet-w18,hrnet-w64")
    parser.add_argument("--backend", default="jax", choices=("jax", "tensorflow", "torch"))
    parser.add_argument("--images", type=int, default=32, help="one default-size batch")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args()

    from hrnet_eval.__main__ import DEFAULT_BATCH_SIZE

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = common.write_jpegs(os.path.join(tmp, "val"), args.images)
        for name in args.models.split(","):
            weights = common.write_random_weights(name, os.path.join(tmp, "weights"))
            argv = [
                "--models",
                name,
                "--data",
                str(data),
                "--weights-dir",
                str(weights.parent),
                "--no-download",
                "--backend",
                args.backend,
                "--workers",
                "1",
                "--local-cpus",
                "2",
                "--compile-cache",
                "none",
            ]
            wall, results, _ = common.run_evaluator(argv, os.path.join(tmp, "out-" + name))
            row = results["models"][0]
            weights_mib = weights.stat().st_size / (1 << 20)
            rows.append(
                {
                    "model": name,
                    "backend": args.backend,
                    "batch": DEFAULT_BATCH_SIZE,
                    "worker_peak_rss_mib": row["worker_peak_rss_mib"],
                    "weights_file_mib": round(weights_mib, 1),
                    "job_wall_s": round(wall, 1),
                }
            )
            print(
                f"{name}: worker peak RSS {row['worker_peak_rss_mib']:.0f} MiB at batch {DEFAULT_BATCH_SIZE} "
                f"({args.backend}); weights file {weights_mib:.0f} MiB "
                f"({row['worker_peak_rss_mib'] / weights_mib:.1f}x)",
                flush=True,
            )
    common.write_json(args.json, rows=rows)


if __name__ == "__main__":
    main()
