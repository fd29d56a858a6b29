"""Time of two export steps: ONNX from the torch backend, and loading an exported `.keras`.

    .venv/bin/python benchmarks/export_time.py [--row hrnet-w18-small] [--image-size 64]
        [--repeats 3] [--json benchmarks/results/export_time.json]

- ONNX on torch (random weights, batch dynamic): `hrnet_keras.torch_onnx.export_onnx` (torch's
  exporter, `torch.export` + onnxscript) against Keras' `model.export(format="onnx")`, which
  takes TorchScript's exporter for a dynamic batch.
- `keras.models.load_model` on JAX of the BatchNorm-folded `.keras` that
  `export --format keras --fold-batchnorm` writes (random initializers saved as `Zeros`)
  against the same model saved with its own initializers.

Each step runs in its own fresh process (Keras imported before the clock starts), `--repeats`
times, interleaved; prints the median seconds per way.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "packages" / "hrnet-keras" / "src"

ONNX = """
import sys, time, keras
from hrnet_keras import create_model
from hrnet_keras.torch_onnx import export_onnx
row, size, way, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
model = create_model(row, weights=None, input_shape=(size, size, 3), classifier_activation=None)
spec = keras.InputSpec(shape=(None, size, size, 3), dtype="float32", name="images")
start = time.perf_counter()
if way == "torch.export":
    export_onnx(model, path, spec)
else:
    model.export(path, format="onnx", input_signature=[spec], verbose=False)
print(time.perf_counter() - start)
"""
SAVE = """
import sys, keras
from hrnet_keras.export import export_model
from hrnet_keras.inference import fold_batchnorm
from hrnet_keras import create_model
row, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
keras.utils.set_random_seed(0)
print(export_model(row, "keras", out, weights=None, fold_batchnorm=True, image_size=size))
model = fold_batchnorm(create_model(row, weights=None, input_shape=(size, size, 3)))
keras.Model(model.input, model.output).save(out + "/own-initializers.keras")
"""
LOAD = """
import sys, time, keras
start = time.perf_counter()
keras.models.load_model(sys.argv[1], compile=False)
print(time.perf_counter() - start)
"""


def _seconds(code, backend, *args):
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(SRC), TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(f"{backend} run failed:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--row", default="hrnet-w18-small")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        onnx = {"torch.export": [], "keras model.export (TorchScript)": []}
        load = {"export --format keras (Zeros)": [], "own initializers": []}
        folded = Path(_seconds(SAVE, "jax", args.row, args.image_size, tmp))
        files = dict(zip(load, [folded, Path(tmp) / "own-initializers.keras"]))
        for _ in range(args.repeats):
            for way, times in onnx.items():
                path = Path(tmp) / "m.onnx"
                times.append(float(_seconds(ONNX, "torch", args.row, args.image_size, way, path)))
            for way, times in load.items():
                times.append(float(_seconds(LOAD, "jax", files[way])))
        for step, ways in (("onnx export on torch", onnx), ("load_model on jax", load)):
            for way, times in ways.items():
                row = dict(step=step, way=way, row=args.row, image_size=args.image_size)
                row.update(median_s=round(statistics.median(times), 2), runs_s=times)
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
