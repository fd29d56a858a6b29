"""Exports of an HRNet loaded back with their own runtimes, against Keras' logits on real photos.

Every runtime runs in a child process of its own (KERAS_BACKEND is read once per process; the
runtimes load their own copies of oneDNN/TBB); one child per backend exports every format that
backend exports, through the CLI's `main`. The Keras logits come from this process (the torch
backend in CI). ONNX from the torch backend is exported once, with `--uint8-input` at 64 px
(torch's exporter takes ~1 min of the file's time; the uint8 front is one Normalization layer).

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
from hrnet_keras.export import (
    JAX2ONNX_MISSING,
    OPENVINO_F32,
    ExportError,
    artifact_path,
    check_backend,
    openvino_note,
)

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
SMALL = 64  # px: the uint8 export from torch
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
def small_photos(tmp_path_factory):
    """The photos as uint8 `SMALL` x `SMALL` crops of the row's pipeline (a .npy file)."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    resize = round(SMALL * 256 / 224)
    x = np.stack([load_image(root / name, model=ROW, resize=resize, crop=SMALL) for name in PHOTOS])
    assert x.dtype == np.uint8
    path = tmp_path_factory.mktemp("small") / "photos.npy"
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
import contextlib, io
from hrnet_keras.export import main
printed = io.StringIO()
for format in args["formats"].split(","):
    argv = [args["row"], "--format", format, "--weights", args["weights"], "--out", args["out"]]
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0, format
print(json.dumps({"printed": printed.getvalue()}))
"""


@pytest.fixture(scope="module")
def exported(model_files, tmp_path_factory):
    """`exported(backend)`: the folder where one child on `backend` exported `ROW` in every
    format EXPORTS exports from that backend (the child made at the first call);
    `exported.printed[backend]`: what the CLI printed there."""
    folders = {}

    def export(backend):
        if backend not in folders:
            out = tmp_path_factory.mktemp(f"export-{backend}")
            formats = ",".join(f for f, b in EXPORTS if b == backend)
            files = dict(row=ROW, weights=model_files[0], out=out, formats=formats)
            export.printed[backend] = _outputs(EXPORT, backend, **files)["printed"]
            folders[backend] = out
        return folders[backend]

    export.printed = {}
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


@pytest.mark.slow
def test_openvino_note_loads_the_ir_in_f32(model_files, exported, photos, tmp_path):
    """The line the export prints and writes beside the IR compiles it so that every node of
    the executed graph runs f32, on CPUs where OpenVINO's default is bf16 too."""
    _, want = model_files
    path = artifact_path(exported("openvino"), ROW, "openvino")
    note = openvino_note(path).read_text()
    (line,) = [line.strip() for line in note.splitlines() if line.strip().startswith("ov.")]
    assert line == OPENVINO_F32.format(xml=path.name)
    assert OPENVINO_F32.format(xml=path) in exported.printed["openvino"]
    out = tmp_path / "got.npy"
    result = _outputs(OPENVINO_NOTE_LINE, "openvino", path=path, photos=photos, out=out, line=line)
    diff, plain = _diff(np.load(out), want), _diff(np.load(out.with_suffix(".plain.npy")), want)
    print(
        f"{ROW} OpenVINO IR on a CPU with {result['capabilities']}: the note's line runs "
        f"{result['precisions']} (max |diff| {diff:.2e}); a plain compile_model runs "
        f"{result['plain_precisions']} (max |diff| {plain:.2e})"
    )
    assert result["hint_f32"]
    assert not {"bf16", "f16"} & set(result["precisions"]) and "f32" in result["precisions"]
    assert diff <= TOLERANCE


OPENVINO_NOTE_LINE = """
import os, numpy as np, openvino as ov
from pathlib import Path
def precisions(compiled):  # of the executed graph's nodes
    ops = compiled.get_runtime_model().get_ordered_ops()
    return sorted({op.get_rt_info()["runtimePrecision"].astype(str) for op in ops})
x, out, core = np.load(args["photos"]), Path(args["out"]), ov.Core()
os.chdir(Path(args["path"]).parent)  # the line names the IR as the note's folder holds it
compiled = eval(args["line"])
np.save(out, compiled(x)[0])
plain = core.compile_model(args["path"], "CPU")
np.save(out.with_suffix(".plain.npy"), plain(x)[0])
print(json.dumps({
    "precisions": precisions(compiled), "plain_precisions": precisions(plain),
    "hint_f32": compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32,
    "capabilities": core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"),
}))
"""


RUN_UINT8 = """
import numpy as np
from hrnet_keras.export import load_exported
x = np.load(args["photos"])
run = load_exported(args["path"])
np.save(args["out"], np.concatenate([run(x[:1]), run(x)]))
try:
    run(x.astype("float32"))
    refused = None
except ValueError as exc:
    refused = str(exc)
print(json.dumps({"dtype": str(x.dtype), "refused": refused}))
"""


@pytest.fixture(scope="module")
def small_logits(model_files, small_photos):
    """Keras' logits on `small_photos` normalised with the row's mean and std."""
    model = create_model(
        ROW, weights=model_files[0], input_shape=(SMALL, SMALL, 3), classifier_activation=None
    )
    x = preprocess_input(np.load(small_photos), model=ROW)
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_keras_file_takes_uint8(model_files, small_photos, small_logits, tmp_path):
    """`--format keras --uint8-input`: a plain functional model with a uint8 input and a
    Normalization in front, equal to Keras fed the normalised image (this process's backend)."""
    from hrnet_keras.export import export_model, load_exported

    path = export_model(
        ROW, "keras", tmp_path, weights=model_files[0], image_size=SMALL, uint8_input=True
    )
    assert path.name == f"{ROW}-uint8.keras"
    run = load_exported(path)
    got = run(np.load(small_photos))
    with pytest.raises(ValueError, match="takes uint8 0-255 RGB images"):
        run(np.load(small_photos).astype("float32"))
    print(f"{ROW} .keras, uint8 input: max |diff| {_diff(got, small_logits):.2e}")
    assert _diff(got, small_logits) <= TOLERANCE


@pytest.mark.slow
def test_onnx_from_torch_takes_uint8(model_files, small_photos, small_logits, tmp_path):
    """ONNX exported on the torch backend with `--uint8-input`, fed uint8, equals Keras fed
    the image normalised with the row's mean and std."""
    weights, _ = model_files
    out = tmp_path / "export"
    argv = [ROW, "--format", "onnx", "--uint8-input", "--image-size", str(SMALL)]
    _outputs(EXPORT_ARGV, "torch", argv=json.dumps(argv + ["--weights", str(weights)]), out=out)
    path = artifact_path(out, ROW, "onnx", uint8_input=True)
    assert path.name == f"{ROW}-uint8.onnx"
    import onnx

    (source,) = onnx.load(path, load_external_data=False).graph.input
    assert source.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    result = _outputs(RUN_UINT8, "torch", path=path, photos=small_photos, out=tmp_path / "g.npy")
    assert result["refused"].startswith(f"{path} takes uint8 0-255 RGB images")
    got, want = np.load(tmp_path / "g.npy"), np.concatenate([small_logits[:1], small_logits])
    diff, relative = _diff(got, want), _relative_diff(got, want)
    print(f"{ROW} onnx from torch, uint8 input: max |diff| {diff:.2e} ({relative:.2e} relative)")
    assert diff <= TOLERANCE


EXPORT_ARGV = """
from hrnet_keras.export import main
assert main(json.loads(args["argv"]) + ["--out", args["out"]]) == 0
print(json.dumps({}))
"""


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


@pytest.mark.parametrize("format", ["saved_model", "litert"])
def test_formats_from_tensorflow_refuse_other_backends(format):
    if keras.backend.backend() == "tensorflow":
        pytest.skip("this process runs the tensorflow backend")
    with pytest.raises(ExportError, match=f"--format {format} exports from the tensorflow"):
        check_backend(format)  # this process runs the torch backend
    with pytest.raises(ExportError, match="run with KERAS_BACKEND=tensorflow"):
        check_backend(format)


def test_onnx_exports_from_torch():
    if keras.backend.backend() != "torch":
        pytest.skip("this process does not run the torch backend")
    check_backend("onnx")


def test_onnx_from_torch_without_onnxscript_names_the_install(monkeypatch, tmp_path):
    import importlib.util

    from hrnet_keras import torch_onnx

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxscript" else find_spec(name)
    )
    spec = keras.InputSpec(shape=(None, SMALL, SMALL, 3), name="images")
    with pytest.raises(ImportError, match=f"pip install '{torch_onnx.ONNXSCRIPT}'"):
        torch_onnx.export_onnx(None, tmp_path / "m.onnx", spec)
    assert not list(tmp_path.iterdir())


def test_cli_errors_are_one_line(tmp_path):
    argv = ["-m", "hrnet_keras.export", "hrnet-w18", "--format", "onnx", "--weights", "none"]
    proc = _run(argv + ["--out", str(tmp_path)], "jax", check=False)
    assert proc.returncode == 2
    # jax2onnx (Keras' route on JAX) is not installed: the reason and the backends that work
    assert proc.stderr.strip().splitlines()[-1] == (
        f"python -m hrnet_keras.export: error: {JAX2ONNX_MISSING}"
    )
    argv = ["-m", "hrnet_keras.export", "hrnet-w99", "--format", "keras", "--weights", "none"]
    proc = _run(argv + ["--out", str(tmp_path)], "jax", check=False)
    assert proc.returncode == 2 and "hrnet-w99" in proc.stderr.strip().splitlines()[-1]
    argv = ["-m", "hrnet_keras.export", "hrnet-w18", "--format", "keras"]
    missing = ["--weights", str(tmp_path / "missing.weights.h5"), "--out", str(tmp_path / "o")]
    proc = _run(argv + missing, "jax", check=False)
    assert proc.returncode == 2 and "missing.weights.h5" in proc.stderr.strip().splitlines()[-1]
    assert not list(tmp_path.iterdir())
