"""Benchmark: the CPU paths each Keras backend offers for HRNet, against eager PyTorch.

One process per backend, model and batch size (Keras reads KERAS_BACKEND once). In each,
the mmpretrain model with seeded random weights runs in eager PyTorch (the reference), and
the Keras model with the same weights runs every way that backend offers, timed in
interleaved rounds (one batch of each per round; median of --repeats after a warm-up batch
that compiles):

- every backend: `model.predict` (what a Keras user gets), and `inference_function(model)`
  and `optimize_for_inference(model)` (BatchNorm folded) with each compiler choice:
- JAX: XLA's defaults (`compiler_options=None`), XLA's oneDNN option for this compile only
  (`{"xla_cpu_use_onednn": True}`; `--xla-flags-check` adds a process with
  `XLA_FLAGS=--xla_cpu_use_onednn=true`), and YNNPACK's fusions off
  (`{"xla_cpu_experimental_ynn_fusion_type": ""}`: jaxlib 0.10.2 hands convolutions to
  YNNPACK by default; off, XLA's own Eigen convolutions run);
- TensorFlow: `predict` also under XLA (`jit_compile=True`; Keras' "auto" leaves XLA off on
  a CPU-only machine), and both functions with and without XLA.

The row's "auto" is what `inference_function` takes by default in that process.

Each row also records each way's largest logit difference from eager PyTorch, relative to
the largest logit. 224x224, float32.

    .venv/bin/python benchmarks/cpu_path.py [--models hrnet-w18,hrnet-w48]
        [--batch-sizes 1,32] [--backends jax,tensorflow,torch] [--threads 2]
"""

import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402
from model_throughput import interleaved_rates  # noqa: E402

ONEDNN = {"xla_cpu_use_onednn": True}
NO_YNN = {"xla_cpu_experimental_ynn_fusion_type": ""}


def keras_ways(backend, model, twin, batch):
    """{way: f(images) -> logits as NumPy} for this backend; every compiler choice named."""
    import keras

    from hrnet_keras.inference import inference_function, optimize_for_inference

    ways = {"predict": lambda x: model.predict(x, batch_size=batch, verbose=0)}
    if backend == "jax":
        for label, options in (("defaults", None), ("onednn", ONEDNN), ("no_ynn", NO_YNN)):
            ways[f"function_{label}"] = inference_function(model, compiler_options=options)
            ways[f"optimized_{label}"] = optimize_for_inference(model, compiler_options=options)
    elif backend == "tensorflow":
        twin.compile(jit_compile=True)
        ways["predict_xla"] = lambda x: twin.predict(x, batch_size=batch, verbose=0)
        for label, jit in (("xla", True), ("no_xla", False)):
            ways[f"function_{label}"] = inference_function(model, jit_compile=jit)
            ways[f"optimized_{label}"] = optimize_for_inference(model, jit_compile=jit)
    else:
        ways["function"] = inference_function(model)
        ways["optimized"] = optimize_for_inference(model)
    assert keras.backend.backend() == backend
    return ways


def default_choice(backend):
    """What `inference_function` picks by default here ("auto")."""
    from hrnet_keras import compile_options

    if backend == "jax":
        return {"compiler_options": compile_options.jax_compiler_options()}
    if backend == "tensorflow":
        return {"jit_compile": compile_options.tensorflow_jit_compile()}
    return {}


def measure_one(backend, name, batch, repeats, threads):
    """One row: images/s and relative logit difference of each way, and of eager PyTorch."""
    import torchvision  # noqa: F401  (the torch stack before TensorFlow)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import reference_model

    from hrnet_keras import create_model

    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype("float32")
    ref = reference_model.randomize(reference_model.build_reference(name), seed=3)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    with tempfile.TemporaryDirectory() as tmp:
        path = reference_model.save_mmcls(ref, os.path.join(tmp, f"{name}.pth"))
        model = create_model(name, weights=path, classifier_activation=None)
        twin = create_model(name, weights=path, classifier_activation=None)
    with torch.no_grad():
        want = ref(xt, mode="tensor").numpy()
    ways = keras_ways(backend, model, twin, batch)
    scale = float(np.abs(want).max())
    diffs = {
        f"{way}_rel_diff": float(np.abs(np.asarray(run(x)) - want).max()) / scale
        for way, run in ways.items()
    }

    def torch_eager():
        with torch.no_grad():
            ref(xt, mode="tensor")

    runners = {
        "torch_eager": torch_eager,
        **{way: (lambda r=run: r(x)) for way, run in ways.items()},
    }
    rates = interleaved_rates(runners, batch, repeats)
    row = {
        "backend": backend,
        "model": name,
        "batch": batch,
        "threads": threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "auto": default_choice(backend),
        "cpu": common.cpu_model(),
        "load_before": os.getloadavg()[0],
        **rates,
        **{f"{way}_vs_eager": rates[way] / rates["torch_eager"] for way in ways},
        **diffs,
    }
    print(json.dumps(row), flush=True)
    return row


def main():
    parser = common.sweep_parser(__doc__)
    parser.add_argument("--backends", default="jax,tensorflow,torch")
    parser.add_argument(
        "--xla-flags-check",
        action="store_true",
        help="also run JAX with XLA_FLAGS=--xla_cpu_use_onednn=true (the flag the option sets)",
    )
    args = parser.parse_args()
    if args.child:
        backend, name, batch = args.child
        return measure_one(backend, name, int(batch), args.repeats, args.threads)
    runs = [(backend, {}) for backend in args.backends.split(",")]
    if args.xla_flags_check:
        runs.append(("jax", {"XLA_FLAGS": "--xla_cpu_use_onednn=true"}))
    rows = []
    for name in args.models.split(","):
        for batch in args.batch_sizes.split(","):
            for backend, extra in runs:
                env = dict(
                    os.environ,
                    KERAS_BACKEND=backend,
                    JAX_PLATFORMS="cpu",
                    OMP_NUM_THREADS=str(args.threads),
                    TF_CPP_MIN_LOG_LEVEL="3",
                    **extra,
                )
                argv = [__file__, "--child", backend, name, batch]
                argv += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
                row = common.child_row(argv, env, f"{backend} {name} bs{batch} {extra}")
                if row is None:
                    continue
                rows.append(row)
                ways = [k[: -len("_vs_eager")] for k in row if k.endswith("_vs_eager")]
                print(
                    f"{name:<10} bs{batch:<3} {backend:<10} {row['xla_flags'] or '':<28} "
                    f"eager torch {row['torch_eager']:6.2f} img/s | "
                    + "  ".join(
                        f"{w} {row[w]:.2f} ({row[w + '_vs_eager']:.2f}x, {row[w + '_rel_diff']:.0e})"
                        for w in ways
                    ),
                    flush=True,
                )
    common.write_json(args.json, cpu=common.cpu_model(), rows=rows)
    return rows


if __name__ == "__main__":
    main()
