"""Benchmark: HRNet images/s per Keras backend against eager PyTorch (mmpretrain).

Each backend runs in its own process (Keras reads KERAS_BACKEND once), and
each process also times the mmpretrain PyTorch model on the same inputs with
the same threads, so every figure is a ratio against a reference measured in
the same process. 224x224, fp32, median of --repeats timed batches after warm-up.

    .venv/bin/python benchmarks/model_throughput.py [--models hrnet-w18,hrnet-w48]
        [--batch-sizes 1,32] [--backends jax,tensorflow,torch] [--threads 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _median_rate(fn, batch, repeats):
    fn()  # warm-up: compiles where the backend compiles
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def measure_one(backend, name, batch, repeats, threads):
    """Images/s of the torch reference (eager) and of Keras on `backend`."""
    import torchvision  # noqa: F401  (torch stack before TensorFlow)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import reference_model

    from hrnet_keras import create_model
    from hrnet_keras.inference import fold_batchnorm

    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype("float32")
    ref = reference_model.build_reference(name)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def torch_eager():
        with torch.no_grad():
            ref(xt, mode="tensor")

    result = {"backend": backend, "model": name, "batch": batch}
    result["torch_eager"] = _median_rate(torch_eager, batch, repeats)
    model = create_model(name, classifier_activation=None)
    for label, variant in (("keras", model), ("keras_folded_bn", fold_batchnorm(model))):
        result[label] = _median_rate(_runner(backend, variant, x), batch, repeats)
    result["ratio"] = result["keras"] / result["torch_eager"]
    result["ratio_folded_bn"] = result["keras_folded_bn"] / result["torch_eager"]
    print(json.dumps(result), flush=True)


def _runner(backend, model, x):
    """A no-argument callable running one compiled (JAX, TF) or eager (torch) batch."""
    if backend == "jax":
        import jax

        @jax.jit
        def infer(trainable, non_trainable, inputs):
            return model.stateless_call(trainable, non_trainable, inputs)[0]

        tv = [v.value for v in model.trainable_variables]
        ntv = [v.value for v in model.non_trainable_variables]
        return lambda: infer(tv, ntv, x).block_until_ready()
    if backend == "tensorflow":
        import tensorflow as tf

        fn = tf.function(lambda inputs: model(inputs, training=False), jit_compile=True)
        return lambda: fn(x).numpy()
    import torch

    xk = torch.from_numpy(x)

    def run():
        with torch.no_grad():
            model(xk, training=False)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="hrnet-w18,hrnet-w48")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("BACKEND", "MODEL", "BATCH"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, name, batch = args.child
        return measure_one(backend, name, int(batch), args.repeats, args.threads)
    rows = []
    for name in args.models.split(","):
        for batch in args.batch_sizes.split(","):
            for backend in args.backends.split(","):
                env = dict(os.environ, KERAS_BACKEND=backend, OMP_NUM_THREADS=str(args.threads))
                out = subprocess.run(
                    [sys.executable, __file__, "--child", backend, name, batch,
                     "--repeats", str(args.repeats), "--threads", str(args.threads)],
                    env=env, capture_output=True, text=True,
                )
                lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
                if out.returncode or not lines:
                    print(f"{backend} {name} bs{batch} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                    continue
                rows.append(json.loads(lines[-1]))
                r = rows[-1]
                print(f"{name:<10} bs{batch:<3} {backend:<11} torch eager {r['torch_eager']:6.2f} img/s"
                      f"   keras {r['keras']:6.2f} ({r['ratio']:.2f}x)"
                      f"   keras+folded BN {r['keras_folded_bn']:6.2f} ({r['ratio_folded_bn']:.2f}x)",
                      flush=True)
    return rows


if __name__ == "__main__":
    main()
