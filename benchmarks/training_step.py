"""Benchmark: one HRNet training step per Keras backend against timm's model in plain torch.

Each Keras backend and the timm reference run in their own process (Keras reads
KERAS_BACKEND once), one after the other on the same fixed random batch (`--size` px,
`--batch` images, `classes=10`, Adam, sparse cross-entropy). Keras steps are
`model.train_on_batch` (the step `fit` runs); timm's are zero_grad, forward, loss, backward,
`optimizer.step` on `timm.create_model(..., pretrained=False)` (NCHW). `torch-nchw` is the
torch backend with `keras.config.set_image_data_format("channels_first")`; `jax-no-ynn` is
JAX with `XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=` (XLA's own convolutions). The first step is
timed alone (on JAX and TensorFlow it compiles), then the median of `--steps` more. timm runs
before and after the Keras backends; ratios: Keras step time / the two timm step times' mean
(> 1 is slower than timm).

    .venv/bin/python benchmarks/training_step.py [--models hrnet-w18-small,hrnet-w18]
        [--sizes 128,224] [--batches 4,8] [--backends tensorflow,jax,jax-no-ynn,torch,torch-nchw] [--steps 3]
        [--json benchmarks/results/training_step.json]
    .venv/bin/python benchmarks/training_step.py --smoke   # hrnet-w18-small, 64 px, 1 step
    KERAS_BACKEND=torch .venv/bin/python benchmarks/training_step.py --profile torch \
        --models hrnet-w18-small --sizes 128   # where a torch-backend step spends its time
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402

CLASSES = 10
TIMM_NAMES = {"hrnet-w18": "hrnet_w18", "hrnet-w18-small": "hrnet_w18_small"}
TORCH_RUNS = ("torch", "torch-nchw", "timm")  # what --profile takes
# `jax-no-ynn`: JAX with this flag, YNNPACK's fusions off (hrnet_keras.compile_options)
NO_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type="


def _data(batch, size):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, size, size, 3)).astype("float32")
    return x, (np.arange(batch) % CLASSES).astype("int32")


def _timed(step, steps):
    """(seconds of the first step, median seconds of `steps` more, the last loss)."""
    began = time.perf_counter()
    loss = step()
    first = time.perf_counter() - began
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - began)
    return first, statistics.median(times), float(loss)


def keras_step(name, batch, size, channels_first=False):
    """(a function that runs one `train_on_batch`, the model's layer count)."""
    import keras

    from hrnet_keras import create_model

    x, y = _data(batch, size)
    shape = (size, size, 3)
    if channels_first:
        keras.config.set_image_data_format("channels_first")
        x, shape = x.transpose(0, 3, 1, 2).copy(), (3, size, size)
    keras.utils.set_random_seed(0)
    model = create_model(name, input_shape=shape, classes=CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return lambda: model.train_on_batch(x, y), len(model.layers)


def timm_step(name, batch, size):
    """(a function that runs one training step of timm's model, its leaf module count)."""
    import timm
    import torch

    x, y = _data(batch, size)
    torch.manual_seed(0)
    model = timm.create_model(TIMM_NAMES[name], pretrained=False, num_classes=CLASSES)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y).long()

    def step():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, sum(1 for m in model.modules() if not list(m.children()))


def make_step(backend, name, batch, size):
    if backend == "timm":
        return timm_step(name, batch, size)
    return keras_step(name, batch, size, channels_first=backend.endswith("-nchw"))


def child(backend, name, batch, size, steps):
    """One measurement in this process; prints it as one JSON line."""
    import torch

    step, layers = make_step(backend, name, batch, size)
    first, step_s, loss = _timed(step, steps)
    row = {"backend": backend, "model": name, "batch": batch, "size": size, "layers": layers}
    row.update(first_step_s=first, step_s=step_s, loss=loss)
    row["torch_threads"] = torch.get_num_threads()
    print(json.dumps(row), flush=True)


def profile(backend, name, batch, size, rows=15):
    """torch.profiler's table (self CPU time per op) of one step after two, on one thread
    (no spin-waiting threads on a loaded machine): `--profile torch` or `--profile timm`."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(1)
    step, layers = make_step(backend, name, batch, size)
    for _ in range(2):  # the first steps build the optimizer's slots
        step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        began = time.perf_counter()
        step()
        seconds = time.perf_counter() - began
    print(f"{backend} {name} {size} px batch {batch}, {layers} layers, one thread: {seconds:.3f} s")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="hrnet-w18-small,hrnet-w18")
    parser.add_argument("--sizes", default="128,224")
    parser.add_argument("--batches", default="4")
    parser.add_argument("--backends", default="tensorflow,jax,torch,torch-nchw")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    parser.add_argument("--smoke", action="store_true", help="hrnet-w18-small, 64 px, 1 step")
    parser.add_argument("--json", metavar="FILE", help="also write the rows to FILE")
    parser.add_argument(
        "--profile",
        metavar="BACKEND",
        help="print torch.profiler's table of one step of the first model/size/batch on one "
        "thread: torch, torch-nchw or timm (KERAS_BACKEND=torch)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.profile:
        if os.environ.get("KERAS_BACKEND") != "torch" or args.profile not in TORCH_RUNS:
            sys.exit(f"--profile takes one of {', '.join(TORCH_RUNS)}, with KERAS_BACKEND=torch.")
        first = [v.split(",")[0] for v in (args.models, args.sizes, args.batches)]
        return profile(args.profile, first[0], int(first[2]), int(first[1]))
    if args.child:
        backend, name, batch, size = args.child
        return child(backend, name, int(batch), int(size), args.steps)
    if args.smoke:
        args.models, args.sizes, args.batches, args.steps = "hrnet-w18-small", "64", "4", 1
    for name in args.models.split(","):
        if name not in TIMM_NAMES:
            sys.exit(f"--models: {name!r} has no timm twin here; use {', '.join(TIMM_NAMES)}.")
    print(f"CPU: {common.cpu_model()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    rows = []
    for name in args.models.split(","):
        for size in args.sizes.split(","):
            for batch in args.batches.split(","):
                runs = {}
                # timm before and after the Keras backends: the reference is their mean, so a
                # machine that changes its load mid-run shows in the two timm rows
                for backend in ["timm", *args.backends.split(","), "timm-after"]:
                    env = dict(
                        os.environ,
                        KERAS_BACKEND=backend.split("-")[0].replace("timm", "torch"),
                        TF_CPP_MIN_LOG_LEVEL="3",
                    )
                    if backend == "jax-no-ynn":  # a user's flag: XLA's own convolutions
                        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {NO_YNN_FLAG}".strip()
                    argv = [__file__, "--child", backend.replace("-after", ""), name, batch, size]
                    row = common.child_row(
                        argv + ["--steps", str(args.steps)], env, f"{backend} {name}"
                    )
                    if row is None:
                        continue
                    row["load"] = os.getloadavg()[0]
                    runs[backend] = row
                    row["backend"] = backend
                    rows.append(row)
                    if "timm" in runs and not backend.startswith("timm"):
                        row["vs_timm"] = row["step_s"] / runs["timm"]["step_s"]
                    ratio = f" ({row['vs_timm']:.2f}x timm)" if "vs_timm" in row else ""
                    print(
                        f"{name:<16} {size:>3} px bs{batch:<2} {backend:<10} first step "
                        f"{row['first_step_s']:7.2f} s, then {row['step_s']:6.2f} s/step{ratio}"
                        f"  [{row['layers']} layers, load {row['load']:.1f}]",
                        flush=True,
                    )
                if "timm-after" in runs:  # the ratios against both timm runs' mean
                    reference = (runs["timm"]["step_s"] + runs["timm-after"]["step_s"]) / 2
                    for row in runs.values():
                        if "vs_timm" in row:
                            row["vs_timm"] = row["step_s"] / reference
                            print(
                                f"{name} {size} px bs{batch} {row['backend']}: "
                                f"{row['vs_timm']:.2f}x the timm runs' mean",
                                flush=True,
                            )
    common.write_json(args.json, cpu=common.cpu_model(), rows=rows)
    return rows


if __name__ == "__main__":
    main()
