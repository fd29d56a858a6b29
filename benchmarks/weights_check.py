"""Benchmark: how long the job's driver takes to find and check the table's weights files.

Before a run dispatches anything, its driver resolves every row: finds NAME.weights.h5,
hashes it, reads every tensor and checks shapes and finiteness. Measured here on the
nine mmcls rows (seeded random weights, written once into --weights-dir), three ways,
interleaved in one process; the files sit in the OS page cache throughout:

- "serial": `resolve` row after row with no program cache (how the driver ran before);
- "threads, new cache": `job.resolve_all` (files hashed in threads) with an empty
  program cache: every tensor read, a `checked/` entry written per row;
- "threads, warm cache": the same again on that cache: each file hashed, no tensor read.

    .venv/bin/python benchmarks/weights_check.py --weights-dir /tmp/w9 [--rounds 2] [--json F]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", required=True, help="holds (or gets) the nine files")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    from hrnet_keras.configs import list_models

    models = tuple(list_models("mmcls"))
    for name in models:
        common.write_random_weights(name, args.weights_dir)

    from hrnet_eval import job
    from hrnet_eval.config import EvalConfig
    from hrnet_eval.weights import resolve

    def serial():
        return [resolve(m, args.weights_dir, allow_download=False) for m in models]

    times = {"serial": [], "threads, new cache": [], "threads, warm cache": []}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as cache:
            config = EvalConfig(
                models=models, weights_dir=args.weights_dir, no_download=True, compile_cache=cache
            )
            for label, call in (
                ("serial", serial),
                ("threads, new cache", lambda: job.resolve_all(models, config)),
                ("threads, warm cache", lambda: job.resolve_all(models, config)),
            ):
                began = time.perf_counter()
                specs = call()
                times[label].append(time.perf_counter() - began)
                assert [s.name for s in specs] == list(models)
    figures = {label: {"s": t, "median_s": statistics.median(t)} for label, t in times.items()}
    base = figures["serial"]["median_s"]
    for label, fig in figures.items():
        fig["vs_serial"] = fig["median_s"] / base
        rounds = ", ".join(f"{t:.2f}" for t in fig["s"])
        print(f"{label:20s} {fig['median_s']:6.2f} s ({rounds}) = {fig['vs_serial']:.2f}x serial")
    size = sum(Path(s.weights).stat().st_size for s in serial()) / 1e9
    print(f"{len(models)} files, {size:.2f} GB, on {common.cpu_model()}")
    common.write_json(
        args.json, cpu=common.cpu_model(), rows=list(models), gigabytes=size, figures=figures
    )


if __name__ == "__main__":
    main()
