"""Benchmark: the evaluator's end-to-end images/s against its model alone.

One process per Keras backend. Each builds one `hrnet_eval` worker (the Ray
actor's class, used directly) with seeded random weights, then times in the
same process:
  model only  - `_predict` on batches already decoded (uint8 -> preprocess -> logits)
  end to end  - `evaluate` on JPEGs at ImageNet sizes in class folders (read,
                decode, resize, crop on the worker's decode threads, then the model)
and reports end to end / model only, timed in interleaved rounds (one pass of
each per round, median). Default: W18, batch 32, 2 threads, 128 images.

    .venv/bin/python benchmarks/evaluator_throughput.py [--backends jax,tensorflow,torch]
        [--model hrnet-w18] [--batch-size 32] [--images 128] [--threads 2]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def measure(backend, model, batch, n_images, threads, data_dir, repeats):
    import numpy as np

    from hrnet_eval.data import load_dataset
    from hrnet_eval.images import load
    from hrnet_eval.demo import random_spec
    from hrnet_eval.worker import EvalWorker

    items = list(load_dataset(data_dir, limit=n_images).items)
    spec = random_spec(model)
    worker = EvalWorker(backend, batch_size=batch, decode_threads=threads)
    worker.load(spec)  # builds, folds, compiles for this batch size

    x = np.stack([load(item)[0] for item in items[:batch]])
    worker._predict(x)
    model_only, end_to_end = [], []
    for _ in range(repeats):  # interleaved rounds: drift moves both alike
        began = time.perf_counter()
        for _ in range(len(items) // batch):
            worker._predict(x)
        model_only.append(len(items) // batch * batch / (time.perf_counter() - began))
        began = time.perf_counter()
        result = worker.evaluate(spec, items)
        end_to_end.append(result["images"] / (time.perf_counter() - began))
    model_only, end_to_end = statistics.median(model_only), statistics.median(end_to_end)
    row = {
        "backend": backend,
        "model": model,
        "batch": batch,
        "images": len(items),
        "threads": threads,
        "model_only": model_only,
        "end_to_end": end_to_end,
        "ratio": end_to_end / model_only,
    }
    print(json.dumps(row), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--model", default="hrnet-w18")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE")
    parser.add_argument("--child", nargs=2, metavar=("BACKEND", "DATA"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure(
            args.child[0],
            args.model,
            args.batch_size,
            args.images,
            args.threads,
            args.child[1],
            args.repeats,
        )

    import common

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = common.write_jpegs(os.path.join(tmp, "val"), args.images)
        for backend in args.backends.split(","):
            env = dict(
                os.environ,
                KERAS_BACKEND=backend,
                OMP_NUM_THREADS=str(args.threads),
                TF_NUM_INTRAOP_THREADS=str(args.threads),
                CUDA_VISIBLE_DEVICES="",
            )
            r = common.child_row(
                [
                    __file__,
                    "--child",
                    backend,
                    str(data),
                    "--model",
                    args.model,
                    "--batch-size",
                    str(args.batch_size),
                    "--images",
                    str(args.images),
                    "--threads",
                    str(args.threads),
                    "--repeats",
                    str(args.repeats),
                ],
                env,
                backend,
            )
            if r is None:
                continue
            rows.append(r)
            print(
                f"{r['model']} bs{r['batch']} {backend:<11} model only {r['model_only']:6.2f} img/s"
                f"   end to end {r['end_to_end']:6.2f} img/s   ratio {r['ratio']:.2f}",
                flush=True,
            )
    common.write_json(args.json, rows=rows)


if __name__ == "__main__":
    main()
