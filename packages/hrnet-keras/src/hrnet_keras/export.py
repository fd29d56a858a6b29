"""Export a row of the table for serving, through Keras' own `model.export`.

    python -m hrnet_keras.export hrnet-w18 --format onnx --weights W --out DIR
    python -m hrnet_keras.export hrnet-w18 --format keras --fold-batchnorm --out DIR

Formats: `saved_model` (TF Serving) and `litert` (LiteRT, formerly TFLite) export
from the TensorFlow backend; `onnx` (ONNX Runtime) from TensorFlow (tf2onnx) or torch
(torch's exporter, needs onnxscript), from JAX only where jax2onnx is installed;
`openvino` (OpenVINO IR) and `keras` (a `.keras` file) from any backend.
The artifact takes NHWC float32 images, normalised as `preprocess_input` does
(`--uint8-input`: NHWC uint8 0-255 RGB, normalised inside with the row's mean and
std), any batch size (the ONNX, SavedModel, OpenVINO and LiteRT signatures leave
the batch dynamic), and returns logits (`--softmax`: probabilities). OpenVINO runs
an IR in bf16 by default on CPUs with AMX or AVX512-BF16, and no IR setting makes a
plain `compile_model(path, "CPU")` run it in float32: the export prints, and writes
beside the IR (`NAME.openvino.txt`), the line that loads it in float32.
`--fold-batchnorm` folds every BatchNorm into its conv first; a folded `.keras`
has `keras.layers.Identity` where the BatchNorms stood and loads with plain
`keras.models.load_model`, without hrnet_keras.

`load_exported(path)` runs an artifact with its own runtime (TensorFlow,
onnxruntime, OpenVINO, ai-edge-litert, Keras).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

# format: (Keras' name for it, file suffix, backends it exports from)
FORMATS = {
    "saved_model": ("tf_saved_model", "_saved_model", ("tensorflow",)),
    "onnx": ("onnx", ".onnx", ("tensorflow", "torch", "jax")),
    "openvino": ("openvino", ".xml", ("tensorflow", "jax", "torch", "openvino")),
    "litert": ("litert", ".tflite", ("tensorflow",)),
    "keras": (None, ".keras", ("tensorflow", "jax", "torch", "openvino")),
}
IMAGE_SIZE = 224
# why --format onnx stops on JAX when jax2onnx (Keras' route there) is not installed
JAX2ONNX_MISSING = (
    "--format onnx on the jax backend needs jax2onnx, which is not installed here and "
    "brings Flax, Equinox, Optax and Orbax with it: run with KERAS_BACKEND=torch or "
    "KERAS_BACKEND=tensorflow"
)


class ExportError(ValueError):
    """An export this process cannot do (wrong backend, unknown format)."""


def _backend():
    import keras

    return keras.backend.backend()


def check_backend(format):
    """Raise ExportError unless this process's Keras backend exports `format`."""
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; use one of: {', '.join(FORMATS)}")
    backends = FORMATS[format][2]
    if _backend() not in backends:
        raise ExportError(
            f"--format {format} exports from the {' or '.join(backends)} backend, not "
            f"{_backend()}: run with KERAS_BACKEND={backends[0]}"
        )
    if format == "onnx" and _backend() == "jax":
        import importlib.util

        if importlib.util.find_spec("jax2onnx") is None:
            raise ExportError(JAX2ONNX_MISSING)


def check_out(out):
    """Raise ExportError unless `out` is a folder or can be made one (nothing on its path
    is a file)."""
    out = Path(out)
    for path in (out, *out.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                where = "is a file" if path == out else f"is below the file {path}"
                raise ExportError(f"--out {out} {where}: give a folder to write the export into")
            return


def artifact_path(out, name, format, fold_batchnorm=False, uint8_input=False):
    """Where `export_model` writes row `name` in `format` under the folder `out`."""
    stem = name + ("-folded" if fold_batchnorm else "") + ("-uint8" if uint8_input else "")
    return Path(out) / (stem + FORMATS[format][1])


def export_model(
    name,
    format,
    out,
    *,
    weights="imagenet",
    fold_batchnorm=False,
    softmax=False,
    image_size=IMAGE_SIZE,
    uint8_input=False,
    verbose=False,
):
    """Build row `name` with `weights` (see `create_model`), export it in `format` under the
    folder `out`, and return the artifact's path (a folder for `saved_model`).

    `uint8_input`: the artifact takes uint8 0-255 RGB and normalises it with the row's mean
    and std. OpenVINO: `openvino_note(path)` beside the IR says how to load it in f32."""
    check_backend(format)
    check_out(out)
    import keras

    from hrnet_keras import create_model
    from hrnet_keras.inference import fold_batchnorm as fold
    from hrnet_keras.pretrained import pipeline_of

    model = create_model(
        name,
        weights=weights,
        input_shape=(image_size, image_size, 3),
        classifier_activation="softmax" if softmax else None,
    )
    pipeline = pipeline_of(model)
    if fold_batchnorm:
        model = fold(model)
    if uint8_input:
        model = from_uint8(model, pipeline.mean, pipeline.std)
    path = artifact_path(out, name, format, fold_batchnorm, uint8_input)
    path.parent.mkdir(parents=True, exist_ok=True)
    keras_format = FORMATS[format][0]
    if keras_format is None:
        save_plain_keras(model, path)
        return path
    dtype = "uint8" if uint8_input else "float32"
    spec = keras.InputSpec(shape=(None, image_size, image_size, 3), dtype=dtype, name="images")
    if format == "onnx" and _backend() == "torch":
        from hrnet_keras.torch_onnx import export_onnx

        export_onnx(model, path, spec, verbose=verbose)
        return path
    model.export(str(path), format=keras_format, input_signature=[spec], verbose=verbose)
    if format == "openvino":
        openvino_note(path).write_text(OPENVINO_NOTE.format(xml=path.name))
    return path


# Beside an exported IR. OpenVINO 2026.4 reads no inference precision from an IR: the CPU
# plugin takes only KV-cache and quantisation settings from its `runtime_options`, and per-node
# `disable_fp16_compression` marks are dropped on the nodes its own passes create (decomposed
# BatchNorms, the FullyConnected head), which then run bf16.
OPENVINO_F32 = 'ov.Core().compile_model("{xml}", "CPU", {{"INFERENCE_PRECISION_HINT": "f32"}})'
OPENVINO_NOTE = f"""\
OpenVINO runs {{xml}} in bf16 on CPUs with AMX or AVX512-BF16 unless told otherwise: a plain
compile_model(path, "CPU") there gives reduced-precision logits. Load it in float32:

    {OPENVINO_F32}

(`import openvino as ov`), or with hrnet_keras.export.load_exported(path), which does the same.
"""


def openvino_note(xml_path):
    """The text file `export_model` writes beside an OpenVINO IR: how to load it in f32."""
    xml_path = Path(xml_path)
    return xml_path.with_name(xml_path.stem + ".openvino.txt")


def save_plain_keras(model, path):
    """Save `model` as a plain functional `.keras` file that loads with nothing but
    `keras.models.load_model` (no hrnet_keras), its initializers saved as `Zeros`."""
    import keras

    plain = keras.Model(model.input, model.output, name=model.name)
    _zeros_initializers(plain)
    plain.save(str(path))


def _zeros_initializers(model):
    """Save `model`'s random initializers as `Zeros`: `load_model` runs the initializers of
    the saved config before it reads the weights, and on JAX each random one compiles once
    per weight shape (folded W18-small: 28 s a load, 3.9 s with Zeros; benchmarks/)."""
    import keras

    keep = (keras.initializers.Zeros, keras.initializers.Ones, keras.initializers.Constant)
    layers = list(model.layers)
    for layer in layers:
        layers.extend(getattr(layer, "layers", []))  # a nested model's own
        for name, value in list(vars(layer).items()):
            if isinstance(value, keras.initializers.Initializer) and not isinstance(value, keep):
                setattr(layer, name, keras.initializers.Zeros())


def from_uint8(model, mean, std):
    """`model` behind a `keras.layers.Normalization` with `mean` and `std` (0-255 RGB, per
    channel): a plain functional model taking NHWC uint8 0-255 RGB images."""
    import keras

    images = keras.Input(model.input.shape[1:], dtype="uint8", name="images")
    variance = [s * s for s in std]
    x = keras.layers.Normalization(mean=mean, variance=variance, name="normalize")(images)
    inner = keras.Model(model.input, model.output, name=model.name)
    return keras.Model(images, inner(x), name=model.name)


def load_exported(path, *, threads=None, precision="f32"):
    """`f(images) -> outputs as NumPy` running the artifact at `path` with its own runtime,
    chosen by the path: a SavedModel folder (TensorFlow), `.onnx` (onnxruntime), `.xml`
    (OpenVINO, `precision` its inference precision hint: "f32", or "bf16" / None for the
    CPU's default, which is bf16 on CPUs with AMX), `.tflite` (ai-edge-litert), `.keras`
    (Keras). The images go in as float32, or as given where the artifact takes uint8 (a
    ValueError unless they are uint8). `threads`: the runtime's intra-op threads (default:
    its own choice)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no exported model at {path}")
    if path.is_dir():
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
        loaded = tf.saved_model.load(str(path))  # keep it: its functions hold its variables
        (spec,) = loaded.signatures["serving_default"].structured_input_signature[1].values()
        return lambda x: loaded.serve(tf.constant(_images(x, spec.dtype.name, path))).numpy()
    if path.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        source = session.get_inputs()[0]
        dtype = "uint8" if source.type == "tensor(uint8)" else "float32"
        return lambda x: session.run(None, {source.name: _images(x, dtype, path)})[0]
    if path.suffix == ".xml":
        import openvino as ov

        config = {}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        compiled = ov.Core().compile_model(str(path), "CPU", config)
        dtype = compiled.input(0).get_element_type().to_dtype().name
        return lambda x: compiled(_images(x, dtype, path))[0]
    if path.suffix == ".tflite":
        return _litert_runner(path, threads)
    if path.suffix == ".keras":
        import keras

        model = keras.models.load_model(str(path), compile=False)
        dtype = model.inputs[0].dtype
        return lambda x: keras.ops.convert_to_numpy(model(_images(x, dtype, path), training=False))
    raise ValueError(
        f"{path}: not an exported model (a SavedModel folder, .onnx, .xml, .tflite or .keras)"
    )


def _images(x, dtype, path):
    """`x` as float32, or as given where the artifact at `path` takes uint8 (`dtype`)."""
    x = np.asarray(x)
    if dtype != "uint8":
        return x.astype(np.float32, copy=False)
    if x.dtype != np.uint8:
        raise ValueError(
            f"{path} takes uint8 0-255 RGB images (exported with --uint8-input), not {x.dtype}"
        )
    return x


def _litert_runner(path, threads):
    from ai_edge_litert.interpreter import Interpreter

    options = {"num_threads": threads} if threads else {}
    interpreter = Interpreter(model_path=str(path), **options)
    source, result = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    shape = [None]

    def run(x):
        x = _images(x, np.dtype(source["dtype"]).name, path)
        if shape[0] != x.shape:  # the batch is dynamic: size the tensors for this one
            interpreter.resize_tensor_input(source["index"], x.shape)
            interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(result["index"])

    return run


def main(argv=None):
    from hrnet_keras.configs import PRESETS, get_preset

    parser = argparse.ArgumentParser(
        prog="python -m hrnet_keras.export",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Rows: " + ", ".join(PRESETS),
    )
    parser.add_argument("name", help="a row of the table, e.g. hrnet-w18")
    parser.add_argument("--format", required=True, choices=list(FORMATS))
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="'imagenet' (the row's published checkpoint, the default), a row name, a "
        ".weights.h5/.keras/.pth/.safetensors file, or 'none' (random init)",
    )
    parser.add_argument(
        "--fold-batchnorm", action="store_true", help="fold each BatchNorm into its conv first"
    )
    parser.add_argument("--softmax", action="store_true", help="output probabilities, not logits")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="default: 224")
    parser.add_argument(
        "--uint8-input",
        action="store_true",
        help="take NHWC uint8 0-255 RGB images, normalised inside with the row's mean and std",
    )
    parser.add_argument("--out", required=True, help="output folder")
    args = parser.parse_args(argv)
    if args.image_size % 32:
        parser.error(f"--image-size {args.image_size} is not a multiple of 32")
    weights = None if args.weights.lower() == "none" else args.weights
    try:
        get_preset(args.name)
        path = export_model(
            args.name,
            args.format,
            args.out,
            weights=weights,
            fold_batchnorm=args.fold_batchnorm,
            softmax=args.softmax,
            image_size=args.image_size,
            uint8_input=args.uint8_input,
        )
    except (ExportError, ValueError, FileNotFoundError, ImportError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"python -m hrnet_keras.export: error: {message}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.format}, Keras backend {_backend()})")
    if args.format == "openvino":
        print(
            f"load it in float32 (not OpenVINO's bf16 CPU default): {OPENVINO_F32.format(xml=path)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
