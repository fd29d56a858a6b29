"""Exports of an HRNet loaded back with their own runtimes, against Keras' logits on real photos.

Every runtime runs in a child process of its own (KERAS_BACKEND is read once per process; the
runtimes load their own copies of oneDNN/TBB); one child per backend exports every format that
backend exports, through the CLI's `main`. The Keras logits come from this process (the torch
backend in CI).

The row is W18-small: the export path is the same for every row, and W18-small has every layer
kind of W18 (bottleneck stem, basic blocks, fuse layers up and down, the classification head)
in a smaller graph, which the converters (tf2onnx, LiteRT, OpenVINO) walk in less than half
W18's time.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import hrnet_keras
from hrnet_keras import create_model, load_image, preprocess_input
from hrnet_keras.export import ExportError, artifact_path, check_backend

ROW = "hrnet-w18-small"
# (format, the backend it is exported from)
EXPORTS = [
    ("saved_model", "tensorflow"),
    ("onnx", "tensorflow"),
    ("litert", "tensorflow"),
    ("openvino", "tensorflow"),
    ("openvino", "openvino"),
]
PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png")
# fp32: max |diff| of the logits (they reach ~3 here); printed also relative to the largest
TOLERANCE = 1e-4
SRC = str(Path(hrnet_keras.__file__).resolve().parent.parent)


def _run(argv, backend, check=True):
    # this process's import path: under Pants the packages and requirements are not installed
    path = os.pathsep.join(map(os.path.abspath, [SRC, *sys.path]))
    env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=path)
    proc = subprocess.run([sys.executable, *argv], env=env, capture_output=True, text=True)
    if check and proc.returncode:
        pytest.fail(f"{' '.join(argv[:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def _outputs(code, backend, **files):
    """Run `code` in a child on `backend`; it gets `args` (the paths given) and prints JSON."""
    proc = _run(
        [
            "-c",
            "import json, sys; args = json.loads(sys.argv[1])\n" + code,
            json.dumps({k: str(v) for k, v in files.items()}),
        ],
        backend,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import skimage.data

    root = Path(skimage.data.__file__).parent
    x = preprocess_input(np.stack([load_image(root / name) for name in PHOTOS]))
    path = tmp_path_factory.mktemp("photos") / "photos.npy"
    np.save(path, x)
    return path


@pytest.fixture(scope="module")
def model_files(photos, tmp_path_factory):
    """`ROW` with random weights and BatchNorm statistics (timm's model, `randomize`d, saved
    as timm publishes and converted) as a .weights.h5 (no torch needed to read it), and its
    Keras logits."""
    import reference_model

    folder = tmp_path_factory.mktemp("weights")
    _, safetensors = reference_model.timm_checkpoint(
        "hrnet_w18_small", folder / "timm.safetensors", seed=5
    )
    model = create_model(ROW, weights=safetensors, classifier_activation=None)
    weights = folder / f"{ROW}.weights.h5"
    model.save_weights(weights)
    logits = keras.ops.convert_to_numpy(model(np.load(photos), training=False))
    return weights, logits


EXPORT = """
from hrnet_keras.export import main
for format in args["formats"].split(","):
    argv = [args["row"], "--format", format, "--weights", args["weights"], "--out", args["out"]]
    assert main(argv) == 0, format
print(json.dumps({}))
"""


@pytest.fixture(scope="module")
def exported(model_files, tmp_path_factory):
    """`exported(backend)`: the folder where one child on `backend` exported `ROW` in every
    format EXPORTS exports from that backend (the child made at the first call)."""
    folders = {}

    def export(backend):
        if backend not in folders:
            out = tmp_path_factory.mktemp(f"export-{backend}")
            formats = ",".join(f for f, b in EXPORTS if b == backend)
            _outputs(EXPORT, backend, row=ROW, weights=model_files[0], out=out, formats=formats)
            folders[backend] = out
        return folders[backend]

    return export


RUN_EXPORTED = """
import numpy as np
from hrnet_keras.export import load_exported
x = np.load(args["photos"])
run = load_exported(args["path"])
# the batch is dynamic: one image, then all of them, through the same artifact
one, every = run(x[:1]), run(x)
np.save(args["out"], np.concatenate([one, every]))
print(json.dumps({"shapes": [one.shape, every.shape]}))
"""


def _diff(got, want):
    return float(np.abs(got - want).max())


def _relative_diff(got, want):
    return _diff(got, want) / float(np.abs(want).max())


@pytest.mark.slow
@pytest.mark.parametrize("format, backend", EXPORTS)
def test_export_equals_keras_on_photos(format, backend, model_files, exported, photos, tmp_path):
    _, want = model_files
    path = artifact_path(exported(backend), ROW, format)
    result = _outputs(RUN_EXPORTED, backend, path=path, photos=photos, out=tmp_path / "got.npy")
    assert result["shapes"] == [[1, 1000], [len(PHOTOS), 1000]]
    got = np.load(tmp_path / "got.npy")
    want = np.concatenate([want[:1], want])
    diff, relative = _diff(got, want), _relative_diff(got, want)
    print(f"{ROW} {format} (from {backend}): max |diff| {diff:.2e} ({relative:.2e} relative)")
    assert diff <= TOLERANCE


LOAD_PLAIN_KERAS = """
import keras, numpy as np
model = keras.models.load_model(args["path"], compile=False)
assert "hrnet_keras" not in sys.modules
kinds = sorted({type(layer).__name__ for layer in model.layers})
got = keras.ops.convert_to_numpy(model(np.load(args["photos"]), training=False))
np.save(args["out"], got)
print(json.dumps({"kinds": kinds}))
"""


def test_folded_keras_file_loads_on_every_backend_without_hrnet_keras(
    model_files, photos, tmp_path
):
    from hrnet_keras.export import export_model

    weights, want = model_files
    path = export_model(ROW, "keras", tmp_path, weights=weights, fold_batchnorm=True)
    assert path.name == f"{ROW}-folded.keras"
    for backend in ("jax", "tensorflow", "torch", "openvino"):
        out = tmp_path / f"{backend}.npy"
        result = _outputs(LOAD_PLAIN_KERAS, backend, path=path, photos=photos, out=out)
        assert "BatchNormalization" not in result["kinds"] and "Identity" in result["kinds"]
        diff, relative = _diff(np.load(out), want), _relative_diff(np.load(out), want)
        print(f"{ROW} folded .keras on {backend}: max |diff| {diff:.2e} ({relative:.2e} rel.)")
        assert diff <= TOLERANCE


OPENVINO_BACKEND = """
import keras, numpy as np
from hrnet_keras import create_model
x = np.load(args["photos"])
model = create_model(args["row"], weights=args["weights"], classifier_activation=None)
np.save(args["eager"], keras.ops.convert_to_numpy(model(x, training=False)))
np.save(args["predict"], model.predict(x, verbose=0))
print(json.dumps({"backend": keras.backend.backend()}))
"""


def test_openvino_backend_builds_and_predicts(model_files, photos, tmp_path):
    weights, want = model_files
    files = dict(eager=tmp_path / "eager.npy", predict=tmp_path / "predict.npy")
    result = _outputs(
        OPENVINO_BACKEND, "openvino", row=ROW, weights=weights, photos=photos, **files
    )
    assert result["backend"] == "openvino"
    # eager calls run in f32; `predict` compiles with OpenVINO's default precision (bf16
    # on CPUs with AMX): the same classes, logits within bf16 rounding
    eager, predicted = np.load(files["eager"]), np.load(files["predict"])
    print(
        f"openvino backend: max |diff| eager {_diff(eager, want):.2e}, predict "
        f"{_diff(predicted, want):.2e} ({_relative_diff(predicted, want):.2e} relative)"
    )
    assert _diff(eager, want) <= TOLERANCE
    assert _relative_diff(predicted, want) <= 1e-2
    np.testing.assert_array_equal(predicted.argmax(1), want.argmax(1))


@pytest.mark.parametrize("format", ["saved_model", "onnx", "litert"])
def test_formats_from_tensorflow_refuse_other_backends(format):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("this process runs the tensorflow backend")
    with pytest.raises(ExportError, match=f"--format {format} exports from the tensorflow"):
        check_backend(format)  # this process runs the torch backend
    with pytest.raises(ExportError, match="run with KERAS_BACKEND=tensorflow"):
        check_backend(format)


def test_cli_errors_are_one_line(tmp_path):
    argv = ["-m", "hrnet_keras.export", "hrnet-w18", "--format", "onnx", "--weights", "none"]
    proc = _run(argv + ["--out", str(tmp_path)], "jax", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "python -m hrnet_keras.export: error: --format onnx exports from the tensorflow "
        "backend, not jax: run with KERAS_BACKEND=tensorflow"
    )
    argv = ["-m", "hrnet_keras.export", "hrnet-w99", "--format", "keras", "--weights", "none"]
    proc = _run(argv + ["--out", str(tmp_path)], "jax", check=False)
    assert proc.returncode == 2 and "hrnet-w99" in proc.stderr.strip().splitlines()[-1]
    argv = ["-m", "hrnet_keras.export", "hrnet-w18", "--format", "keras"]
    missing = ["--weights", str(tmp_path / "missing.weights.h5"), "--out", str(tmp_path / "o")]
    proc = _run(argv + missing, "jax", check=False)
    assert proc.returncode == 2 and "missing.weights.h5" in proc.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())
