"""Time to load a saved HRNet: `.keras` (load_model, create_model) against `.weights.h5`.

    .venv/bin/python benchmarks/load_keras.py [--models hrnet-w18 hrnet-w48] [--backend jax]
        [--repeats 3] [--json benchmarks/results/load_keras.json]

Writes each model's random-init weights once as `NAME.weights.h5` and `NAME.keras`, then
times each way of loading in its own fresh process (Keras imported before the clock starts),
`--repeats` times, interleaved; prints the median seconds and the ratio to
`create_model(NAME, weights=FILE.weights.h5)`.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WAYS = {
    "create_model(weights=.weights.h5)": ("hrnet_keras.create_model({name!r}, weights={h5!r})"),
    "keras.models.load_model(.keras)": "keras.models.load_model({keras!r})",
    "create_model(weights=.keras)": "hrnet_keras.create_model({name!r}, weights={keras!r})",
}
TIMED = """
import time, keras, hrnet_keras, hrnet_keras.model
start = time.perf_counter()
model = {call}
print(time.perf_counter() - start)
"""
WRITE = """
import keras, hrnet_keras
keras.utils.set_random_seed(0)
model = hrnet_keras.create_model({name!r})
model.save_weights({h5!r})
model.save({keras!r})
print("written")
"""


def run(code, backend):
    env = dict(os.environ, KERAS_BACKEND=backend)
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # every process compiles from scratch
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed:\n{code}\n{proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["hrnet-w18"])
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ways", nargs="+", type=int, help="only these of WAYS (0 1 2)")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            files = {"name": name, "h5": f"{tmp}/{name}.weights.h5", "keras": f"{tmp}/{name}.keras"}
            run(WRITE.format(**files), args.backend)
            ways = list(WAYS)
            ways = [ways[0]] + [ways[i] for i in args.ways or range(1, len(ways)) if i]
            times = {way: [] for way in ways}
            for _ in range(args.repeats):
                for way in ways:
                    call = WAYS[way]
                    code = TIMED.format(call=call.format(**files))
                    times[way].append(float(run(code, args.backend)))
            base = statistics.median(times[ways[0]])
            for way, seconds in times.items():
                median = statistics.median(seconds)
                row = {
                    "model": name,
                    "backend": args.backend,
                    "way": way,
                    "seconds": seconds,
                    "median_s": round(median, 2),
                    "ratio": round(median / base, 2),
                }
                rows.append(row)
                print(f"{name} {args.backend} {way}: median {median:.2f} s ({row['ratio']}x)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
