"""Benchmark: the evaluator on one GPU node, the three figures of the GPU-evaluator issue.

In one process tree, on the machine it runs on (made for the lent H200, 16 cores):
  decode ceiling  `load_image` (500x375-class JPEG -> 224 crop) in one process per core
  model path      the worker's W18 row at batch 256: uint8 batch on the host -> top-5
                  classes on the host (normalise and top-5 inside the jitted function)
  CLI, W18        `python -m hrnet_eval --models hrnet-w18` on N JPEGs, local Ray cluster
  CLI, --all      `--all --limit L`
  cluster         `cluster_start.py --profile`: the local cluster's start step by step,
                  and the worker actor's start (own runtime_env / env set by itself)
Each CLI run twice with one compile cache, cold (empty) then warm (that cache), with
random weights saved as .weights.h5; reported: the whole job's wall time (process start
to results written) and its parts (cluster, each row's load, scoring).
JPEGs are written here from scikit-image's photos at ImageNet sizes, a mixed set:
qualities 75/85/90/95, every 97th grayscale, every 211th CMYK. Extrapolated to 50,000
images: fixed = wall - row-images / (row-images/s once every row is loaded), then
fixed + 50,000 x rows / that rate.

    python benchmarks/gpu_evaluator.py --work /tmp/gpu-bench --json OUT.json
    python benchmarks/gpu_evaluator.py --smoke    # tiny sizes, to try the script on a CPU
"""

import argparse
import json
import os
import shutil
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
    from hrnet_eval.config import WorkerConfig
    from hrnet_eval.worker import EvalWorker

    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        images = np.stack(pool.map(_decode, jpegs(data, n), chunksize=16))
    worker = EvalWorker(WorkerConfig(backend="jax", batch_size=batch))
    began = time.perf_counter()
    worker.load(ModelSpec("hrnet-w18", str(weights), "bench"))
    loaded = time.perf_counter() - began
    rates = []
    for _ in range(repeats):
        began = time.perf_counter()
        top5, _ = worker.top5("hrnet-w18", images)
        rates.append(len(images) / (time.perf_counter() - began))
    assert len(top5) == len(images)
    return {
        "images": len(images),
        "batch": batch,
        "load_s": round(loaded, 1),
        "device": worker.device,
        "images_per_second": round(statistics.median(rates), 1),
        "rounds": [round(r, 1) for r in rates],
    }


def cli(argv, output):
    """One CLI run: wall time, its parts, and the extrapolation to 50,000 images."""
    wall, results, text = common.run_evaluator(argv, output)
    timing = results["timing"]
    images = results["images"]
    rows = len(results["models"])
    rate = timing.get("images_per_second_all_ready") or timing["images_per_second"]
    fixed = wall - images * rows / rate
    written = [line for line in text.splitlines() if "] wrote " in line]
    return {
        "argv": " ".join(argv),
        "images": images,
        "rows": rows,
        "wall_s": round(wall, 1),  # process start to exit (Ray's shutdown included)
        "results_written_s": float(written[-1][1:9]) if written else None,
        "parts": {
            "prepare_s": timing.get("prepare_s"),
            "cluster_s": timing["connect_s"],
            "first_row_ready_s": timing["first_worker_ready_s"],
            "last_row_ready_s": timing["last_worker_ready_s"],
            "scoring_s": timing["evaluating_s"],
            "rows": timing["row_load"],
            "early_builds": timing.get("early_builds"),  # {row: steps} built beside the start
            "decoded_twice": timing["decoded_twice"],
        },
        "row_images_per_second_all_ready": rate,
        "fixed_s": round(fixed, 1),
        "extrapolated_50k_s": round(fixed + IMAGENET_VAL * rows / rate, 1),
        "log": text.strip().splitlines()[:40],  # seconds since the process started, per line
        "log_tail": text.strip().splitlines()[-16:],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/gpu-bench")
    parser.add_argument("--images", type=int, default=8192)
    parser.add_argument("--all-limit", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", default="data,weights,ceiling,model,cli,all,cluster")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU try of the script)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.all_limit, args.batch_size = 128, 128, 8
    steps = args.steps.split(",")
    work = Path(args.work)
    data, weights = work / "val", work / "weights"
    figures = {"machine": common.machine(), "args": vars(args)}

    def save():
        common.write_json(args.json, **figures)

    log("cpus", os.cpu_count())  # this process never touches the GPU: the workers do
    rows = ["hrnet-w18", "hrnet-w30"] if args.smoke else None
    from hrnet_keras.configs import PRESETS, list_models

    rows = rows or list_models("mmcls")  # the rows of --all: the table
    if "data" in steps:
        began = time.perf_counter()
        common.write_jpegs(data, args.images, processes=os.cpu_count(), mixed=True)
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
    if "cluster" in steps:
        import subprocess

        out = work / "cluster_start.json"
        command = [sys.executable, os.path.join(HERE, "cluster_start.py"), "--profile"]
        command += ["--rounds", "2", "--out", str(out)]
        subprocess.run(command, check=True, env={**os.environ, "KERAS_BACKEND": "jax"})
        figures["cluster_start"] = json.loads(out.read_text())
        log("cluster start", json.dumps(figures["cluster_start"]["median"]))
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
    runs = {"cli": ["--models", "hrnet-w18"], "all": ["--all", "--limit", str(args.all_limit)]}
    if args.smoke:  # W18 on 32 images; for --all, two rows of two programs (ready one after
        # another) on 16 shards, so W18 is past the decode window before W30 is ready
        runs["cli"] += ["--limit", "32"]
        runs["all"] = ["--models", ",".join(rows), "--limit", str(args.all_limit)]
        runs["all"] += ["--shard-size", "8"]
    for step, which in runs.items():
        if step not in steps:
            continue
        shutil.rmtree(work / f"cache-{step}", ignore_errors=True)
        for state in ("cold", "warm"):  # one cache: empty, then what the cold run left
            shutil.rmtree(work / f"out-{step}-{state}", ignore_errors=True)
            figures[f"{step}_{state}"] = cli(
                [*which, "--compile-cache", str(work / f"cache-{step}"), *common_argv],
                work / f"out-{step}-{state}",
            )
            log(f"{step} {state}", json.dumps(figures[f"{step}_{state}"], indent=1))
            save()
    save()


if __name__ == "__main__":
    main()
