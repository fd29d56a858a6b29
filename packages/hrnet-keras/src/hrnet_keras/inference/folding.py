"""BatchNorm folded into the preceding conv: the same function, fewer ops per image.

`fold_batchnorm(model)` returns a twin in which every BatchNorm that follows a
Conv2D is folded into that conv (kernel scaled per output channel, a bias
added) and replaced by `keras.layers.Identity`: the same logits up to float rounding.
`folded_model(name)` builds that twin of an HRNet directly, for `fold_weights(model, twin)`
to fill. With `data_format="channels_first"` the twin also computes in NCHW inside (its
input and output stay those of `model`), which spares the torch backend a layout permute
around every conv. Fold after loading weights; the twin is inference-only.
"""

import keras
import numpy as np

from hrnet_keras.architecture import batchnorm_name
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


def conv_bn_pairs(model):
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
    pairs = conv_bn_pairs(model)
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
    pairs = conv_bn_pairs(model)
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
            fold_conv_bn(kernel, bias, *map(keras.ops.convert_to_numpy, statistics), bn.epsilon)
        )


def fold_conv_bn(kernel, bias, gamma, beta, mean, var, epsilon):
    """[kernel, bias] (float32) of a conv with its BatchNorm folded in, computed in float64.
    HWIO in either layout: the last axis is the output channel."""
    gamma, beta, mean, var = (np.asarray(a, "float64") for a in (gamma, beta, mean, var))
    scale = gamma / np.sqrt(var + epsilon)
    return [
        (np.asarray(kernel, "float64") * scale).astype("float32"),
        ((np.asarray(bias, "float64") - mean) * scale + beta).astype("float32"),
    ]


def _permutes(data_format):
    """Permute dims (batch excluded) into `data_format` and back out of it."""
    if data_format == "channels_first":
        return (3, 1, 2), (2, 3, 1)
    return (2, 3, 1), (3, 1, 2)
