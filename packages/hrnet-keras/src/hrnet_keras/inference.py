"""Inference-time rewrites that keep the model's function, and a fast forward pass.

`fold_batchnorm(model)` returns a twin in which every BatchNorm that follows a
Conv2D is folded into that conv (kernel scaled per output channel, a bias
added) and replaced by `keras.layers.Identity`: fewer ops per image, the same logits up
to float rounding. `folded_model(name)` builds that twin of an HRNet directly, for
`fold_weights(model, twin)` to fill. With `data_format="channels_first"` the twin also computes
in NCHW inside (its input and output stay those of `model`), which spares the
torch backend a layout permute around every conv. Fold after loading weights;
the twin is inference-only.

`inference_function(model)` is the model's forward pass compiled where the
backend compiles (JAX `jit`, TensorFlow XLA) and, on torch, run layer by layer
as torch's own functions. `optimize_for_inference(model)` is both,
with the layout that is fastest on the current backend.
"""

import functools
import warnings

import keras
import numpy as np

from hrnet_keras.architecture import batchnorm_name
from hrnet_keras.configs import BN_EPSILON
from hrnet_keras.initializers import NumpyZeros

# Initialiser attributes of the layers HRNet holds (Conv2D, Dense, BatchNormalization).
INITIALIZED = (
    "kernel_initializer",
    "bias_initializer",
    "gamma_initializer",
    "beta_initializer",
    "moving_mean_initializer",
    "moving_variance_initializer",
)


def _conv_bn_pairs(model):
    """{conv layer name: BatchNorm layer} for each conv/BatchNorm pair that `conv_bn`
    built, known by their names (`architecture.batchnorm_name`)."""
    by_name = {layer.name: layer for layer in model.layers}
    pairs = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            bn = by_name.get(batchnorm_name(layer.name))
            if isinstance(bn, keras.layers.BatchNormalization):
                pairs[layer.name] = bn
    return pairs


def preferred_data_format():
    """The internal layout that runs fastest on this backend (measured, see benchmarks/)."""
    return "channels_first" if keras.backend.backend() == "torch" else "channels_last"


def _model_data_format(model):
    for layer in model.layers:
        data_format = getattr(layer, "data_format", None)
        if data_format:
            return data_format
    return keras.config.image_data_format()


def fold_batchnorm(model, data_format=None):
    """A copy of `model` with each Conv2D + BatchNorm pair folded into one conv.

    Built with `keras.models.clone_model`: the conv gets a bias, the BatchNorm
    becomes a `keras.layers.Identity` of the same name, so the twin is a plain
    Keras model (it saves and loads without hrnet_keras). `data_format`: the
    twin's internal layout (default: the model's). The twin takes and returns
    tensors in the model's own layout either way (a `Permute` after its input
    and before each 4-D output).
    """
    source_format = _model_data_format(model)
    data_format = data_format or source_format
    if data_format not in ("channels_first", "channels_last"):
        raise ValueError(
            f"data_format must be 'channels_first' or 'channels_last', not {data_format!r}"
        )
    relayout = data_format != source_format
    pairs = _conv_bn_pairs(model)
    folded_bns = {bn.name for bn in pairs.values()}

    def clone(layer):
        if layer.name in folded_bns:
            return keras.layers.Identity(name=layer.name)
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
        for key in INITIALIZED:  # every weight is set below: skip Keras' random draws
            if key in config:
                config[key] = NumpyZeros()
        if relayout and "data_format" in config:
            config["data_format"] = data_format
        if relayout and isinstance(layer, keras.layers.BatchNormalization):
            config["axis"] = 1 if data_format == "channels_first" else -1
        return layer.__class__.from_config(config)

    inputs = keras.Input(
        batch_shape=model.input.shape, dtype=model.input.dtype, name=model.input.name
    )
    inner = inputs
    if relayout:
        to_inner, to_outer = _permutes(data_format)
        inner = keras.layers.Permute(to_inner, name="to_" + data_format)(inputs)

    def call(layer, *args, **kwargs):
        """clone_model's hook: the Permute goes in first; an Identity takes no BN options."""
        args = keras.tree.map_structure(lambda x: inner if x is inputs else x, args)
        if layer.name in folded_bns:
            kwargs = {}
        return layer(*args, **kwargs)

    twin = keras.models.clone_model(
        model, input_tensors=inputs, clone_function=clone, call_function=call
    )
    if relayout:
        outputs = keras.tree.map_structure(
            lambda y: (
                keras.layers.Permute(to_outer, name=f"{y.name}_to_{source_format}")(y)
                if len(y.shape) == 4
                else y
            ),
            twin.outputs if isinstance(model.output, list) else twin.output,
        )
        twin = keras.Model(inputs, outputs, name=model.name)

    fold_weights(model, twin)
    return twin


def folded_model(name, **kwargs):
    """The twin that `fold_batchnorm` makes of `create_model(name, **kwargs)`, built
    directly: each conv with a bias, each of its BatchNorms an Identity of the same name,
    in the model's own layout, no clone. Without weights: set it to a model's with
    `fold_weights(model, twin)`."""
    from hrnet_keras import blocks
    from hrnet_keras.model import create_model

    if kwargs.get("weights") is not None:
        raise ValueError("folded_model builds without weights; set them with fold_weights")
    with blocks.folded():
        return create_model(name, **kwargs)


def fold_weights(model, twin):
    """Set `twin` (made by `fold_batchnorm` from a model of the same architecture) to
    `model`'s current weights, folded: a second set of weights needs no second clone."""
    pairs = _conv_bn_pairs(model)
    folded_bns = {bn.name for bn in pairs.values()}
    for layer in model.layers:
        if not layer.weights or layer.name in folded_bns:
            continue
        target = twin.get_layer(layer.name)
        for key in INITIALIZED:  # what a saved twin records: the model's own initialisers
            if hasattr(layer, key):
                setattr(target, key, getattr(layer, key))
        if layer.name not in pairs:
            target.set_weights(layer.get_weights())
            continue
        bn = pairs[layer.name]
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        bias = keras.ops.convert_to_numpy(layer.bias) if layer.use_bias else 0.0
        statistics = (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
        target.set_weights(
            _fold(kernel, bias, *map(keras.ops.convert_to_numpy, statistics), bn.epsilon)
        )


def _fold(kernel, bias, gamma, beta, mean, var, epsilon):
    """[kernel, bias] (float32) of a conv with its BatchNorm folded in, computed in float64.
    HWIO in either layout: the last axis is the output channel."""
    gamma, beta, mean, var = (np.asarray(a, "float64") for a in (gamma, beta, mean, var))
    scale = gamma / np.sqrt(var + epsilon)
    return [
        (np.asarray(kernel, "float64") * scale).astype("float32"),
        ((np.asarray(bias, "float64") - mean) * scale + beta).astype("float32"),
    ]


# Where `model.save_weights` files a layer of each class: "layers/<name>[_<n>]", the n-th
# layer of that class in `model.layers` order (what `keras.saving.KerasFileEditor` shows).
SAVED_NAMES = {
    "Conv2D": "conv2d",
    "BatchNormalization": "batch_normalization",
    "Dense": "dense",
}


class FoldedWeightsError(ValueError):
    """A `.weights.h5` whose layers do not map onto a folded twin; the message says where."""


def load_folded_weights(twin, path):
    """Set `twin` (built by `folded_model`) to the weights of a `.weights.h5` of its
    unfolded model, folded as `fold_weights` folds them, without building that model.

    The file is read with `keras.saving.KerasFileEditor`; its layers are matched by class
    and order, each BatchNorm to the Identity the twin holds in its place, and every array
    checked against the twin's shapes. Raises `FoldedWeightsError` naming the file and the
    layer where the file does not fit (then load the model and use `fold_weights`). The
    twin keeps its own initialisers.
    """
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the editor prints the file's name
            saved = keras.saving.KerasFileEditor(path).weights_dict.get("layers", {})
    except Exception as exc:  # truncated, not HDF5, not a Keras file
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise FoldedWeightsError(f"{path}: KerasFileEditor cannot read it ({reason})") from None
    identities = {layer.name for layer in twin.layers if isinstance(layer, keras.layers.Identity)}
    counts, used, values, pending = {}, set(), {}, {}

    def take(cls_name, layer_name, shapes):
        base = SAVED_NAMES.get(cls_name)
        if base is None:
            raise FoldedWeightsError(f"{path}: no saved name known for {cls_name} {layer_name}")
        n = counts[base] = counts.get(base, -1) + 1
        key = base if n == 0 else f"{base}_{n}"
        arrays = saved.get(key) or {}
        got = [np.asarray(arrays[str(i)]) for i in range(len(shapes)) if str(i) in arrays]
        if len(arrays) != len(shapes) or any(a.shape != s for a, s in zip(got, shapes)):
            have = [np.shape(v) for v in arrays.values()]
            raise FoldedWeightsError(
                f"{path}: layers/{key} holds {have} where {layer_name} needs {shapes}"
            )
        used.add(key)
        return got

    for layer in twin.layers:
        bn = batchnorm_name(layer.name)
        if isinstance(layer, keras.layers.Conv2D) and bn in identities:  # a folded pair
            kernel_shape = tuple(layer.kernel.shape)
            pending[bn] = (layer, take("Conv2D", layer.name, [kernel_shape])[0])
        elif layer.name in pending:  # the unfolded model's BatchNorm, here an Identity
            conv, kernel = pending.pop(layer.name)
            statistics = take("BatchNormalization", layer.name, [(kernel.shape[-1],)] * 4)
            values[conv.name] = _fold(kernel, 0.0, *statistics, BN_EPSILON)
        elif layer.weights:
            shapes = [tuple(w.shape) for w in layer.weights]
            values[layer.name] = take(type(layer).__name__, layer.name, shapes)
    unused = sorted(set(saved) - used)
    if unused or pending:
        raise FoldedWeightsError(
            f"{path}: the twin {twin.name} has no place for layers {unused[:5]} "
            f"({len(unused)}); is it the file of another row or head?"
        )
    for name, arrays in values.items():
        twin.get_layer(name).set_weights(arrays)


def _permutes(data_format):
    """Permute dims (batch excluded) into `data_format` and back out of it."""
    if data_format == "channels_first":
        return (3, 1, 2), (2, 3, 1)
    return (2, 3, 1), (3, 1, 2)


@functools.cache
def graph_walk_works():
    """Whether Keras' private graph walk (`_run_through_graph` of a functional model, which
    `graph_runner` uses) exists and runs a one-layer functional graph as the plain call does,
    with the operation it is given. Checked once per process."""
    x = keras.ops.convert_to_tensor(np.array([[1.0, 2.0]], dtype="float32"))
    try:  # Keras' own Model() walks the graph too: a missing walk fails right here
        inputs = keras.Input((2,))
        dense = keras.layers.Dense(2, kernel_initializer="ones", bias_initializer="ones")
        probe = keras.Model(inputs, dense(inputs))
        walk = probe._run_through_graph
        want = keras.ops.convert_to_numpy(probe(x, training=False))
        same = walk(x, operation_fn=lambda layer: layer)
        shifted = walk(x, operation_fn=lambda layer: lambda *a, **k: layer(*a, **k) + 1.0)
        same, shifted = keras.ops.convert_to_numpy(same), keras.ops.convert_to_numpy(shifted)
    except Exception:  # missing, or a changed private signature: take the public call
        return False
    return np.allclose(same, want) and np.allclose(shifted, want + 1.0)


def graph_runner(model, operation_fn):
    """`f(x)`: `model`'s layer graph run on `x` with each layer's computation replaced by
    `operation_fn(layer)`.

    Keras has no public API for this: it is the private graph walk of a functional
    `keras.Model`, taken only where `graph_walk_works()`. Otherwise `f` is the plain
    model call (same outputs, slower), with a warning.
    """
    if not graph_walk_works():
        warnings.warn(
            f"hrnet_keras.inference: Keras {keras.__version__}'s private graph walk "
            "(_run_through_graph) is missing or behaves otherwise; running the plain model "
            "call instead of the lowered graph",
            stacklevel=2,
        )
        return lambda x: model(x, training=False)
    return lambda x: model._run_through_graph(x, operation_fn=operation_fn)


def _head(model, call, *, from_uint8, top_k, finite, mean=None, std=None):
    """`call` (images -> outputs) wrapped with the options of `inference_function`."""
    from hrnet_keras.preprocessing import MEAN, STD

    channels_last = model.input.shape[-1] == 3
    shape = (3,) if channels_last else (3, 1, 1)
    mean = np.asarray(MEAN if mean is None else mean, "float32").reshape(shape)
    std = np.asarray(STD if std is None else std, "float32").reshape(shape)

    def body(x):
        if from_uint8:
            x = (keras.ops.cast(x, "float32") - mean) / std
        y = call(x)
        out = keras.ops.top_k(y, top_k)[1] if top_k else y
        if finite:
            return out, keras.ops.all(keras.ops.isfinite(y), axis=-1)
        return out

    return body


def inference_function(
    model, *, from_uint8=False, top_k=None, finite=False, mean=None, std=None, to_numpy=True
):
    """`f(images) -> outputs`, the fastest forward pass this backend offers.

    JAX: `jax.jit` over `model.stateless_call`, the weights passed as arguments.
    TensorFlow: `tf.function(jit_compile=True)`. torch: no autograd, the graph
    walked with each layer lowered to torch's own function (conv, pad, relu, add,
    upsample, pool, linear; kernels laid out OIHW once), `layer.call` for other
    layers: Keras' per-call bookkeeping and per-conv layout permutes cost more
    than a small conv on a CPU. Compiling backends compile once per input shape:
    keep the batch size fixed (pad the last batch). The weights are read when
    the function is made.

    `from_uint8`: the images are 0-255 RGB (uint8 is 4x fewer bytes to move),
    normalised inside the function with `mean` and `std` (0-255 RGB; default the
    table's, `hrnet_keras.preprocessing.MEAN` / `STD`). `top_k`:
    return the indices of the k largest outputs per image (int32, largest
    first) instead of the outputs. `finite`: return `(outputs, ok)`, `ok[i]` true
    where every output of image i is finite (a NaN logit has no top-k).
    `to_numpy=False` returns the backend's own tensors without waiting for them
    (convert with `keras.ops.convert_to_numpy`).
    """
    options = dict(from_uint8=from_uint8, top_k=top_k, finite=finite, mean=mean, std=std)
    convert = keras.ops.convert_to_numpy if to_numpy else (lambda y: y)

    def out(y):
        return keras.tree.map_structure(convert, y)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        forward = jax.jit(_stateless_forward(model, **options))
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        return lambda x: out(forward(trainable, non_trainable, x))
    if backend == "tensorflow":
        import tensorflow as tf

        body = _head(model, lambda x: model(x, training=False), **options)
        forward = tf.function(body, jit_compile=True)
        return lambda x: out(forward(tf.convert_to_tensor(x)))
    if backend == "torch":
        import torch

        lowered = {layer.name: _torch_op(layer) for layer in model.layers}
        forward = _head(model, graph_runner(model, lambda layer: lowered[layer.name]), **options)

        def run(x):
            with torch.inference_mode():
                return out(forward(keras.ops.convert_to_tensor(x)))

        return run
    forward = _head(model, lambda x: model(x, training=False), **options)
    return lambda x: out(forward(keras.ops.convert_to_tensor(x)))


def _stateless_forward(model, **options):
    """`f(trainable, non_trainable, x)`: the model as a pure function of its weights (JAX)."""

    def forward(trainable, non_trainable, x):
        call = _head(
            model,
            lambda x: model.stateless_call(trainable, non_trainable, x, training=False)[0],
            **options,
        )
        return call(x)

    return forward


def export_jax_program(model, batch_size, *, platforms=None, **options):
    """`model`'s forward pass as a portable JAX program: (StableHLO bytes, weights).

    The program is `jax.export`'s serialisation (a data format: no pickle, no
    compiled code) of `f(trainable, non_trainable, images)` for a fixed batch of
    `batch_size` images of the model's input shape, with the options of
    `inference_function`; the weights are NumPy arrays in argument order
    (trainable, then non-trainable). `platforms`: what it is lowered for
    (e.g. `("cuda",)`, from a CPU-only process), default this process's device.
    Run it with `jax.export.deserialize(program).call(trainable, non_trainable, x)`.
    JAX backend only.
    """
    import jax

    if keras.backend.backend() != "jax":
        raise ValueError(
            f"export_jax_program needs KERAS_BACKEND=jax, not {keras.backend.backend()}"
        )
    dtype = "uint8" if options.get("from_uint8") else "float32"
    spec = jax.ShapeDtypeStruct((batch_size, *model.input.shape[1:]), dtype)
    trainable = [np.asarray(v.value) for v in model.trainable_variables]
    non_trainable = [np.asarray(v.value) for v in model.non_trainable_variables]
    shapes = [
        [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in ws] for ws in (trainable, non_trainable)
    ]
    exported = jax.export.export(
        jax.jit(_stateless_forward(model, **options)), platforms=platforms
    )(*shapes, spec)
    return bytes(exported.serialize()), (trainable, non_trainable)


def _torch_op(layer):
    """`layer`'s inference computation as a plain torch function over NCHW tensors, its
    weights laid out once for torch (OIHW kernels); `layer.call` for anything else."""
    import torch
    import torch.nn.functional as F

    layers = keras.layers
    config = layer.get_config()
    nchw = config.get("data_format") == "channels_first"
    activation = _torch_activation(getattr(layer, "activation", None))
    if isinstance(layer, layers.Identity):
        return lambda x, **kwargs: x
    if isinstance(layer, layers.Permute):
        dims = (0, *config["dims"])
        return lambda x, **kwargs: x.permute(dims)
    if isinstance(layer, layers.Add):
        return lambda xs, **kwargs: sum(xs[1:], xs[0])
    if isinstance(layer, layers.ReLU) and not (
        layer.max_value or layer.negative_slope or layer.threshold
    ):
        return lambda x, **kwargs: torch.relu(x)
    padding = _torch_padding(layer) if isinstance(layer, layers.Conv2D) else None
    if padding is not None and nchw and activation is not None:
        weight = _detached(layer.kernel).permute(3, 2, 0, 1).contiguous()
        bias = _detached(layer.bias) if layer.use_bias else None
        options = dict(
            stride=layer.strides, padding=padding, dilation=layer.dilation_rate, groups=layer.groups
        )
        return lambda x, **kwargs: activation(F.conv2d(x, weight, bias, **options))
    if isinstance(layer, layers.ZeroPadding2D) and nchw:
        (top, bottom), (left, right) = layer.padding
        return lambda x, **kwargs: F.pad(x, (left, right, top, bottom))
    if isinstance(layer, layers.UpSampling2D) and nchw and layer.interpolation == "nearest":
        factor = tuple(layer.size)
        return lambda x, **kwargs: x.repeat_interleave(factor[0], 2).repeat_interleave(factor[1], 3)
    if isinstance(layer, layers.GlobalAveragePooling2D) and nchw and not layer.keepdims:
        return lambda x, **kwargs: x.mean((2, 3))
    if isinstance(layer, layers.Dense) and activation is not None:
        weight = _detached(layer.kernel).t().contiguous()
        bias = _detached(layer.bias) if layer.use_bias else None
        return lambda x, **kwargs: activation(F.linear(x, weight, bias))
    if isinstance(layer, layers.BatchNormalization):
        return lambda x, **kwargs: layer.call(x, training=False)
    return layer.call


def _detached(variable):
    return keras.ops.convert_to_tensor(variable).detach()


def _torch_padding(layer):
    """torch's `padding` for the conv `layer`, None where Keras pads otherwise."""
    if layer.padding == "valid":
        return 0
    if all(s == 1 for s in layer.strides) and all(k % 2 for k in layer.kernel_size):
        return tuple((k - 1) // 2 * d for k, d in zip(layer.kernel_size, layer.dilation_rate))
    return None


def _torch_activation(activation):
    if activation is keras.activations.linear:
        return lambda x: x
    if activation is keras.activations.relu:
        import torch

        return torch.relu
    return None


def optimize_for_inference(model, **options):
    """`inference_function(fold_batchnorm(model), **options)` in this backend's preferred
    layout; by default `f(float32 images) -> logits as NumPy`."""
    twin = fold_batchnorm(model, data_format=preferred_data_format())
    return inference_function(twin, **options)
