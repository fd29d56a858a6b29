"""Benchmark: convert the largest row (HRNet-W64) from a published-layout .pth.

Makes a W64 checkpoint with the mmpretrain reference model (same layout and
size as the published file), then runs `python -m hrnet_keras.convert` on it
in a fresh process per mode: the default (`.weights.h5`) and `--keras` (also
the `.keras`). Each child imports everything and starts the Keras backend
first, then samples its own RSS every 10 ms while `convert.main` runs: the
figure is the peak growth over that start. Reference: `torch.load` of the
same file (time) and the file's size (memory).

    KERAS_BACKEND=jax .venv/bin/python benchmarks/convert_w64.py [--code SRC] [--modes ...]

`--code SRC` converts with the hrnet_keras package under SRC (e.g. an older
checkout's packages/hrnet-keras/src) to measure before and after alike.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Peak-RSS sampling shared by both child scripts (a thread reading RSS every 10 ms).
SAMPLER = r"""
proc = psutil.Process()
base = proc.memory_info().rss
peak = [base]
stop = threading.Event()
def sample():
    while not stop.wait(0.01):
        peak[0] = max(peak[0], proc.memory_info().rss)
"""
CHILD = (
    r"""
import json, resource, sys, threading, time
import torchvision  # torch stack before TensorFlow
import keras, psutil, torch
from hrnet_keras import convert
keras.Variable(0.0)  # start the backend
"""
    + SAMPLER
    + r"""thread = threading.Thread(target=sample, daemon=True)
thread.start()
t0 = time.perf_counter()
code = convert.main(sys.argv[1:])
seconds = time.perf_counter() - t0
stop.set(); thread.join()
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("RESULT " + json.dumps({"code": code, "seconds": seconds, "base": base,
                               "peak": max(peak[0], maxrss)}))
"""
)
# The conversion's steps one by one (this checkout's API), RSS growth after each.
STEPS = (
    r"""
import gc, sys, threading, time
import torchvision  # torch stack before TensorFlow
import keras, psutil
from hrnet_keras import network
from hrnet_keras.checkpoints.keymap import assign_state
from hrnet_keras.checkpoints.layouts import to_mmcls
from hrnet_keras.checkpoints.reader import read_state_dict
keras.Variable(0.0)
"""
    + SAMPLER
    + r"""threading.Thread(target=sample, daemon=True).start()
t0 = time.perf_counter()
def step(what):
    now = proc.memory_info().rss
    print(f"  {what:<24}{time.perf_counter() - t0:6.2f} s   RSS +{(now - base) / 2**20:5.0f} MiB"
          f"   peak +{(max(peak[0], now) - base) / 2**20:5.0f} MiB", flush=True)
model = network.classifier("hrnet-w64", classifier_activation="softmax")
step("build Keras model")
state = to_mmcls(read_state_dict(sys.argv[1]))[1]
step("torch.load")
assign_state(model, state, release=sys.argv[2] == "release")
del state; gc.collect()
step(f"assign ({sys.argv[2]})")
model.save_weights(sys.argv[3])
step("save .weights.h5")
"""
)


def run_child(code_root, ckpt, out, extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code_root), str(HERE.parent / "tests")]))
    argv = [str(ckpt), "--model", "hrnet-w64", "--out", str(out), "--no-progress", *extra]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, *argv], env=env, capture_output=True, text=True
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"conversion failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main():
    sys.path.insert(0, str(HERE.parent / "tests"))
    import torchvision  # noqa: F401  (torch stack before TensorFlow)
    import keras
    import reference_model
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--code",
        default=str(HERE.parent / "packages" / "hrnet-keras" / "src"),
        help="folder holding the hrnet_keras package to measure (default: this checkout's)",
    )
    parser.add_argument(
        "--steps", action="store_true", help="also time the steps one by one (this checkout)"
    )
    parser.add_argument(
        "--modes", nargs="+", default=["default", "keras"], choices=["default", "keras"]
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hrnet-bench-"))
    ckpt = work / "hrnet-w64.pth"
    reference_model.save_mmcls(reference_model.build_reference("hrnet-w64"), ckpt)
    size = ckpt.stat().st_size
    t0 = time.perf_counter()
    torch.load(ckpt, map_location="cpu", weights_only=True)
    load_s = time.perf_counter() - t0

    print(f"backend            {keras.backend.backend()}")
    code = Path(args.code).resolve()
    here = HERE.parent.resolve()
    print(f"code               {code.relative_to(here) if code.is_relative_to(here) else code}")
    print(f"checkpoint         {size / 2**20:.0f} MiB")
    print(f"torch.load         {load_s:.2f} s (reference)")
    for mode in args.modes:
        out = work / mode
        result = run_child(args.code, ckpt, out, ["--keras"] if mode == "keras" else [])
        grown = result["peak"] - result["base"]
        written = ", ".join(f"{p.name} {p.stat().st_size / 2**20:.0f} MiB" for p in out.iterdir())
        print(f"[{mode}] wrote      {written}")
        print(
            f"[{mode}] convert    {result['seconds']:.2f} s = "
            f"{result['seconds'] / load_s:.1f}x torch.load  (goal <= 30 s)"
        )
        print(
            f"[{mode}] peak RSS   +{grown / 2**20:.0f} MiB = {grown / size:.2f}x the checkpoint"
            f"  (goal <= 3x; RSS at start {result['base'] / 2**20:.0f} MiB)",
            flush=True,
        )
    if args.steps:
        env = dict(os.environ, PYTHONPATH=str(HERE.parent / "packages" / "hrnet-keras" / "src"))
        for release in ("keep", "release"):
            print(f"steps, checkpoint tensors kept until the end / released as assigned: {release}")
            out = work / f"steps-{release}.weights.h5"
            argv = [sys.executable, "-c", STEPS, str(ckpt), release, str(out)]
            lines = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
            print("\n".join(x for x in lines.stdout.splitlines() if x.startswith("  ")))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
