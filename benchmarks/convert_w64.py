"""Benchmark: convert the largest row (HRNet-W64) from a published-layout .pth.

Makes a W64 checkpoint with the mmpretrain reference model (same layout and
size as the published file), then times `python -m hrnet_keras.convert` work
in this process and samples its RSS. Reference run in the same process:
`torch.load` of the same file (time) and the file size (memory).

    KERAS_BACKEND=jax .venv/bin/python benchmarks/convert_w64.py [--keep DIR]
"""

import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

import psutil  # noqa: E402


class PeakRSS:
    """Samples this process's RSS every 10 ms while active."""

    def __init__(self):
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main():
    import torchvision  # noqa: F401  (torch stack before TensorFlow)
    import keras
    import reference_model
    import torch

    from hrnet_keras.checkpoints import convert_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", help="write the converted files here (default: a temp dir)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="hrnet-bench-")
    ckpt = os.path.join(work, "hrnet-w64.pth")
    reference_model.save_mmcls(reference_model.build_reference("hrnet-w64"), ckpt)
    size = os.path.getsize(ckpt)

    t0 = time.perf_counter()
    torch.load(ckpt, map_location="cpu", weights_only=True)
    load_s = time.perf_counter() - t0

    with PeakRSS() as rss:
        t0 = time.perf_counter()
        convert_checkpoint(ckpt, "hrnet-w64", args.keep or work)
        convert_s = time.perf_counter() - t0
    grown = rss.peak - rss.base
    phases = _phases(ckpt, work)
    print(f"backend            {keras.backend.backend()}")
    print(f"checkpoint         {size / 2**20:.0f} MiB")
    print(f"torch.load         {load_s:.2f} s (reference)")
    print(
        f"convert            {convert_s:.2f} s  = {convert_s / load_s:.1f}x torch.load"
        f"  (goal <= 30 s)"
    )
    print(
        f"peak RSS growth    {grown / 2**20:.0f} MiB = {grown / size:.2f}x the checkpoint"
        f"  (goal <= 3x; process RSS before: {rss.base / 2**20:.0f} MiB)"
    )
    print("where the time goes (a second conversion, step by step):")
    for step, seconds in phases.items():
        print(f"  {step:<22}{seconds:6.2f} s")


def _phases(ckpt, work):
    """The steps of `convert_checkpoint`, timed one by one."""
    from hrnet_keras import create_model
    from hrnet_keras.checkpoints import load_checkpoint_into

    times = {}
    t0 = time.perf_counter()
    model = create_model("hrnet-w64")
    times["build Keras model"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_checkpoint_into(model, ckpt, "hrnet-w64")
    times["read + map + assign"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.save_weights(os.path.join(work, "phase.weights.h5"))
    times["save .weights.h5"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    model.save(os.path.join(work, "phase.keras"))
    times["save .keras"] = time.perf_counter() - t0
    return times


if __name__ == "__main__":
    main()
