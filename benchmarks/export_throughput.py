"""Benchmark: exported HRNet on CPU runtimes against eager PyTorch (mmpretrain).

The row is exported once per model from the TensorFlow backend (`hrnet_keras.export`:
ONNX, OpenVINO IR, LiteRT). Then each runtime runs in its own process, which also times
the mmpretrain PyTorch model (eager) on the same inputs with the same threads, in
interleaved rounds (one batch of each per round, median of --repeats after a warm-up), so
every figure is a ratio against eager PyTorch measured in the same process:

- onnxruntime (CPU provider); OpenVINO runtime with an f32 precision hint, and its CPU
  default (bf16 through AMX where the CPU has it: reduced precision, reported beside);
  LiteRT (ai-edge-litert, XNNPACK);
- the Keras paths: `optimize_for_inference` on the jax / tensorflow / torch backends, and
  the OpenVINO backend's `predict_on_batch` (compiled with OpenVINO's default precision);
- `--folded-predict`: plain `model.predict_on_batch` of the model and of its BatchNorm-folded
  twin (the `.keras` that `--fold-batchnorm` writes) per backend.

Reduced-precision rows carry their max |logit diff| relative to the fp32 path's largest logit.
224x224, random weights (the reference's randomised as the tests do, so that no activation
is denormal).

    .venv/bin/python benchmarks/export_throughput.py [--models hrnet-w18,hrnet-w48]
        [--batch-sizes 1,32] [--runtimes onnxruntime,openvino,litert,keras_tensorflow,...]
        [--threads 2] [--json benchmarks/results/export_throughput.json]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402
from model_throughput import interleaved_rates  # noqa: E402

# runtime: (Keras backend of its process, exported format it runs or None)
RUNTIMES = {
    "onnxruntime": ("tensorflow", "onnx"),
    "openvino": ("tensorflow", "openvino"),
    "litert": ("tensorflow", "litert"),
    "keras_tensorflow": ("tensorflow", None),
    "keras_jax": ("jax", None),
    "keras_torch": ("torch", None),
    "keras_openvino": ("openvino", None),
}


def _relative(got, want):
    import numpy as np

    return float(np.abs(got - want).max() / np.abs(want).max())


def measure_one(runtime, name, batch, repeats, threads, artifacts, folded_predict):
    """Images/s of eager PyTorch and of `runtime` in this process; prints one JSON row."""
    import torchvision  # noqa: F401  (torch stack before TensorFlow)
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import reference_model

    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype("float32")
    # random weights and BatchNorm statistics keep the activations O(1): the default init
    # drives deep activations into denormals, which slow eager PyTorch down several-fold
    ref = reference_model.randomize(reference_model.build_reference(name))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def torch_eager():
        with torch.inference_mode():
            ref(xt, mode="tensor")

    runners = {"torch_eager": torch_eager}
    extra = {}
    if runtime in ("onnxruntime", "openvino", "litert"):
        from hrnet_keras.export import artifact_path, load_exported

        path = artifact_path(artifacts, name, RUNTIMES[runtime][1])
        run = load_exported(path, threads=threads)
        runners[runtime] = lambda: run(x)
        if runtime == "openvino":
            default = load_exported(path, threads=threads, precision=None)
            runners["openvino_default_precision"] = lambda: default(x)
            extra["openvino_default_precision_logit_diff"] = _relative(default(x), run(x))
    else:
        import keras

        from hrnet_keras import create_model
        from hrnet_keras.inference import fold_batchnorm, optimize_for_inference

        keras.utils.set_random_seed(0)
        model = create_model(name, classifier_activation=None, input_shape=(224, 224, 3))
        if folded_predict:
            folded = fold_batchnorm(model)
            runners["predict"] = lambda: model.predict_on_batch(x)
            runners["folded_predict"] = lambda: folded.predict_on_batch(x)
        elif runtime == "keras_openvino":
            runners[runtime] = lambda: model.predict_on_batch(x)
            want = keras.ops.convert_to_numpy(model(x[:1], training=False))  # eager: f32
            extra["keras_openvino_logit_diff"] = _relative(model.predict_on_batch(x[:1]), want)
        else:
            forward = optimize_for_inference(model)
            runners[runtime] = lambda: forward(x)
    rates = interleaved_rates(runners, batch, repeats)
    row = {"runtime": runtime, "model": name, "batch": batch, "threads": threads, **rates}
    row["load_average_1min"] = os.getloadavg()[0]  # eager PyTorch (OpenMP) suffers most
    for label in rates:
        if label != "torch_eager":
            row[f"{label}_vs_eager"] = rates[label] / rates["torch_eager"]
    print(json.dumps({**row, **extra}), flush=True)


def export_all(name, out, formats):
    """Export row `name` (random weights) in `formats` under `out`, from the TF backend."""
    from hrnet_keras.export import artifact_path

    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    for format in formats:
        if artifact_path(out, name, format).exists():
            continue
        argv = ["-m", "hrnet_keras.export", name, "--format", format, "--weights", "none"]
        proc = subprocess.run(
            [sys.executable, *argv, "--out", str(out)], env=env, capture_output=True, text=True
        )
        if proc.returncode:
            sys.exit(f"export {name} {format} failed:\n{proc.stderr[-2000:]}")


def main():
    parser = common.sweep_parser(__doc__, child=("RUNTIME", "MODEL", "BATCH"))
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument(
        "--folded-predict",
        action="store_true",
        help="instead: predict_on_batch of the model and its BatchNorm-folded twin per backend",
    )
    parser.add_argument("--quiet-below", type=float, default=1.5, help="load average to wait for")
    parser.add_argument("--max-wait", type=float, default=120, help="seconds to wait for it")
    parser.add_argument("--artifacts", help="folder for the exported models (default: a temp)")
    args = parser.parse_args()
    artifacts = Path(args.artifacts or os.path.join(tempfile.gettempdir(), "hrnet-exports"))
    if args.child:
        runtime, name, batch = args.child
        return measure_one(
            runtime, name, int(batch), args.repeats, args.threads, artifacts, args.folded_predict
        )
    runtimes = args.runtimes.split(",")
    if args.folded_predict:
        runtimes = [r for r in runtimes if r in ("keras_tensorflow", "keras_jax", "keras_torch")]
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        parser.error(f"unknown runtimes {sorted(unknown)}; choose from {', '.join(RUNTIMES)}")
    rows = []
    for name in args.models.split(","):
        formats = [RUNTIMES[r][1] for r in runtimes if RUNTIMES[r][1]]
        export_all(name, artifacts, formats)
        for batch in args.batch_sizes.split(","):
            for runtime in runtimes:
                env = dict(
                    os.environ,
                    KERAS_BACKEND=RUNTIMES[runtime][0],
                    OMP_NUM_THREADS=str(args.threads),
                    TF_NUM_INTRAOP_THREADS=str(args.threads),
                    TF_CPP_MIN_LOG_LEVEL="2",
                )
                argv = [__file__, "--child", runtime, name, batch, "--repeats", str(args.repeats)]
                argv += ["--threads", str(args.threads), "--artifacts", str(artifacts)]
                argv += ["--folded-predict"] if args.folded_predict else []
                waited = wait_for_quiet(args.quiet_below, args.max_wait)
                row = common.child_row(argv, env, f"{runtime} {name} bs{batch}")
                if row is None:
                    continue
                row["waited_for_quiet_s"] = waited
                rows.append(row)
                ratios = "  ".join(
                    f"{k.removesuffix('_vs_eager')} {row[k.removesuffix('_vs_eager')]:.2f} img/s "
                    f"({row[k]:.2f}x)"
                    for k in row
                    if k.endswith("_vs_eager")
                )
                print(
                    f"{name:<10} bs{batch:<3} torch eager {row['torch_eager']:.2f} img/s  {ratios}"
                    f"  (load {row['load_average_1min']:.1f})",
                    flush=True,
                )
    common.write_json(args.json, cpu=cpu_name(), rows=rows)
    return rows


def wait_for_quiet(threshold, max_wait):
    """Wait (at most `max_wait` s) until the 1-minute load average is below `threshold`:
    eager PyTorch's OpenMP threads slow down several-fold when another process holds a core.
    Returns the seconds waited."""
    began = time.monotonic()
    while os.getloadavg()[0] >= threshold and time.monotonic() - began < max_wait:
        time.sleep(5)
    return round(time.monotonic() - began)


def cpu_name():
    """The CPU's model name and the flags that matter here (AMX, AVX-512)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln), ""
    )
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if "flags" in ln), [])
    wanted = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_int8") if f in flags]
    return f"{model} ({os.cpu_count()} CPUs; {' '.join(wanted)})"


if __name__ == "__main__":
    main()
