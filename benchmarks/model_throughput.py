"""Benchmark: HRNet images/s per Keras backend against eager PyTorch (mmpretrain).

Each backend runs in its own process (Keras reads KERAS_BACKEND once), and
each process also times the mmpretrain PyTorch model on the same inputs with
the same threads (and, in the torch process, under `torch.compile`), so every figure is a
ratio against a reference measured in the same process, timed in interleaved
rounds (one batch of each variant per round). Keras runs twice:
"plain" is `inference_function(model)` (JAX jit, a TF graph, torch without Keras'
call bookkeeping); "optimized" is `optimize_for_inference(model)` (BatchNorm
folded, NCHW inside on torch). 224x224, fp32, median of --repeats timed
batches after one warm-up batch (which compiles).

    .venv/bin/python benchmarks/model_throughput.py [--models hrnet-w18,hrnet-w48]
        [--batch-sizes 1,32] [--backends jax,tensorflow,torch] [--threads 2]
"""

import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402


def interleaved_rates(runners, batch, repeats):
    """{name: images/s}: each runner warmed up once (compiling), then timed in
    rounds that take one batch of every runner in turn, so that a machine
    slowing down or speeding up mid-run moves every figure alike. Median per runner."""
    for run in runners.values():
        run()
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            began = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - began)
    return {name: batch / statistics.median(t) for name, t in times.items()}


def measure_one(backend, name, batch, repeats, threads, compiled_reference=True):
    """Images/s of the torch reference (eager) and of Keras on `backend`."""
    import torchvision  # noqa: F401  (torch stack before TensorFlow)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import reference_model

    from hrnet_keras import create_model
    from hrnet_keras.inference import inference_function, optimize_for_inference

    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype("float32")
    ref = reference_model.build_reference(name)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def torch_eager():
        with torch.no_grad():
            ref(xt, mode="tensor")

    runners = {"torch_eager": torch_eager}
    if compiled_reference:
        compiled = torch.compile(lambda a: ref(a, mode="tensor"))

        def torch_compiled():
            with torch.no_grad():
                compiled(xt)

        runners["torch_compiled"] = torch_compiled
    model = create_model(name, classifier_activation=None)
    plain, optimized = inference_function(model), optimize_for_inference(model)
    runners["keras"] = lambda: plain(x)
    runners["keras_optimized"] = lambda: optimized(x)
    result = {
        "backend": backend,
        "model": name,
        "batch": batch,
        "threads": threads,
        **interleaved_rates(runners, batch, repeats),
    }
    for label in ("keras", "keras_optimized"):
        result[f"{label}_vs_eager"] = result[label] / result["torch_eager"]
    print(json.dumps(result), flush=True)


def main():
    parser = common.sweep_parser(__doc__)
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument(
        "--no-torch-compile",
        action="store_true",
        help="skip the torch.compile reference (it compiles for a minute or more)",
    )
    args = parser.parse_args()
    if args.child:
        backend, name, batch = args.child
        return measure_one(
            backend,
            name,
            int(batch),
            args.repeats,
            args.threads,
            compiled_reference=backend == "torch" and not args.no_torch_compile,
        )
    rows = []
    for name in args.models.split(","):
        for batch in args.batch_sizes.split(","):
            for backend in args.backends.split(","):
                env = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS=str(args.threads))
                row = common.child_row(
                    [
                        __file__,
                        "--child",
                        backend,
                        name,
                        batch,
                        "--repeats",
                        str(args.repeats),
                        "--threads",
                        str(args.threads),
                    ]
                    + (["--no-torch-compile"] if args.no_torch_compile else []),
                    env,
                    f"{backend} {name} bs{batch}",
                )
                if row is None:
                    continue
                rows.append(row)
                r = rows[-1]
                compiled = (
                    f" compiled {r['torch_compiled']:6.2f} ({r['torch_compiled'] / r['torch_eager']:.2f}x)"
                    if "torch_compiled" in r
                    else ""
                )
                print(
                    f"{name:<10} bs{batch:<3} {backend:<11} torch eager {r['torch_eager']:6.2f} img/s"
                    f"{compiled}   keras {r['keras']:6.2f} ({r['keras_vs_eager']:.2f}x)"
                    f"   optimized {r['keras_optimized']:6.2f} ({r['keras_optimized_vs_eager']:.2f}x)",
                    flush=True,
                )
    common.write_json(args.json, rows=rows)
    return rows


if __name__ == "__main__":
    main()
