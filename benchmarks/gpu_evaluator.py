"""Benchmark: the evaluator on one GPU node, the three figures of the GPU-evaluator issue.

In one process tree, on the machine it runs on (made for the lent H200, 16 cores):
  decode ceiling  `load_image` (500x375-class JPEG -> 224 crop) in one process per core
  model path      the worker's W18 row at batch 256: uint8 batch on the host -> top-5
                  classes on the host (normalise and top-5 inside the jitted function)
  CLI, W18        `python -m hrnet_eval --models hrnet-w18` on N JPEGs, local Ray cluster,
                  end to end from the first worker ready to the last shard
  CLI, --all      `--all --limit L`, random weights saved as .weights.h5, twice with one
                  compile cache: cold, then warm; whole-job wall time
JPEGs are written here from scikit-image's photos at ImageNet sizes, quality 90. Each
figure extrapolated to 50,000 images = fixed seconds + seconds per image x 50,000.

    python benchmarks/gpu_evaluator.py --work /tmp/gpu-bench --json OUT.json
    python benchmarks/gpu_evaluator.py --smoke    # tiny sizes, to try the script on a CPU
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402

IMAGENET_VAL = 50_000


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def _decode_only(path):
    from hrnet_keras import load_image

    return load_image(path).shape


def _decode(path):
    from hrnet_keras import load_image

    return load_image(path)


def decode_ceiling(paths, processes):
    """Images/s of `load_image` in `processes` processes (results not shipped back)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(_decode_only, paths[: processes * 4])  # imports done in every process
        began = time.perf_counter()
        pool.map(_decode_only, paths, chunksize=16)
        return len(paths) / (time.perf_counter() - began)


def jpegs(data, n):
    """The first `n` JPEGs under `data` (class folders), in a fixed order."""
    return sorted(str(p) for p in Path(data).glob("*/*.JPEG"))[:n]


def model_path(data, n, weights, batch, repeats=3):
    """Images/s of the worker's row: uint8 on the host in, top-5 on the host out."""
    import multiprocessing

    import numpy as np

    from hrnet_eval.spec import ModelSpec
    from hrnet_eval.worker import EvalWorker

    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        images = np.stack(pool.map(_decode, jpegs(data, n), chunksize=16))
    worker = EvalWorker("jax", batch)
    began = time.perf_counter()
    info = worker.load([ModelSpec("hrnet-w18", str(weights), "bench")])
    loaded = time.perf_counter() - began
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        top5 = worker.top5("hrnet-w18", images)
        rates.append(len(images) / (time.perf_counter() - began))
    assert len(top5) == len(images)
    return {
        "images": len(images),
        "batch": batch,
        "load_s": round(loaded, 1),
        "device": info["device"],
        "images_per_second": round(statistics.median(rates), 1),
        "rounds": [round(r, 1) for r in rates],
    }


def cli(argv, output):
    wall, results, text = common.run_evaluator(argv, output)
    timing = results["timing"]
    images = results["images"]
    fixed = wall - timing["evaluating_s"]
    per_image = timing["evaluating_s"] / images
    return {
        "argv": " ".join(argv),
        "images": images,
        "rows": len(results["models"]),
        "wall_s": round(wall, 1),
        "timing": timing,
        "images_per_second_end_to_end": round(images / timing["evaluating_s"], 1),
        "fixed_s": round(fixed, 1),
        "extrapolated_50k_s": round(fixed + per_image * IMAGENET_VAL, 1),
        "log_tail": text.strip().splitlines()[-14:],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/gpu-bench")
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--all-limit", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", default="data,weights,ceiling,model,cli,all")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU try of the script)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.all_limit, args.batch_size = 32, 16, 8
    steps = args.steps.split(",")
    work = Path(args.work)
    data, weights = work / "val", work / "weights"
    figures = {"machine": common.machine(), "args": vars(args)}

    def save():
        common.write_json(args.json, **figures)

    log("cpus", os.cpu_count())  # this process never touches the GPU: the workers do
    rows = ["hrnet-w18"] if args.smoke else None
    from hrnet_keras.configs import PRESETS

    rows = rows or list(PRESETS)
    if "data" in steps:
        began = time.perf_counter()
        common.write_jpegs(data, args.images, processes=os.cpu_count())
        figures["data_s"] = round(time.perf_counter() - began, 1)
        log("wrote", args.images, "JPEGs in", figures["data_s"], "s")
    if "weights" in steps:
        import concurrent.futures

        began = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(len(rows)) as pool:
            list(pool.map(lambda r: common.write_random_weights(r, weights), rows))
        figures["weights_s"] = round(time.perf_counter() - began, 1)
        log("random weights for", len(rows), "rows in", figures["weights_s"], "s")
    paths = jpegs(data, args.images)
    if "ceiling" in steps:
        rate = decode_ceiling(paths, os.cpu_count())
        figures["decode_ceiling"] = {
            "processes": os.cpu_count(),
            "images_per_second": round(rate, 1),
        }
        log("decode ceiling", figures["decode_ceiling"])
        save()
    if "model" in steps:  # in a child process, which gives the GPU back when it ends
        w18 = weights / PRESETS["hrnet-w18"].keras_weights
        code = (
            "import sys, json; sys.path.insert(0, %r); import gpu_evaluator as g; "
            "print(json.dumps(g.model_path(%r, 4096, %r, %d)))"
            % (HERE, str(data), str(w18), args.batch_size)
        )
        figures["model_path"] = common.child_row(["-c", code], dict(os.environ), "model path")
        log("model path", figures["model_path"])
        save()
    common_argv = [
        "--data",
        str(data),
        "--weights-dir",
        str(weights),
        "--no-download",
        "--batch-size",
        str(args.batch_size),
        "--progress-seconds",
        "5",
    ]
    if "cli" in steps:
        figures["cli_w18"] = cli(
            ["--models", "hrnet-w18", "--compile-cache", str(work / "cache-w18"), *common_argv],
            work / "out-w18",
        )
        log("CLI W18", json.dumps(figures["cli_w18"], indent=1))
        save()
    if "all" in steps:
        which = ["--all"] if not args.smoke else ["--models", ",".join(rows)]
        for run in ("cold", "warm"):
            figures[f"all_{run}"] = cli(
                [
                    *which,
                    "--limit",
                    str(args.all_limit),
                    "--compile-cache",
                    str(work / "cache-all"),
                    *common_argv,
                ],
                work / f"out-all-{run}",
            )
            log(f"--all {run}", json.dumps(figures[f"all_{run}"], indent=1))
            save()
    save()


if __name__ == "__main__":
    main()
