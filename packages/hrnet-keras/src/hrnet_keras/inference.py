"""Inference-time rewrites that keep the model's function.

`fold_batchnorm(model)` returns a twin in which every BatchNorm that follows a
Conv2D is folded into that conv (kernel scaled per output channel, a bias
added) and replaced by a pass-through: fewer ops per image, the same logits up to
float rounding. Fold after loading weights; the twin is inference-only.
"""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="hrnet_keras")
class FoldedBatchNorm(keras.layers.Layer):
    """Stands where a folded BatchNorm stood: passes its input through."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def _conv_bn_pairs(model):
    """{conv layer name: BatchNorm layer} for each BatchNorm fed directly by a Conv2D."""
    pairs = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            producer = layer.input._keras_history.operation
            if isinstance(producer, keras.layers.Conv2D):
                pairs[producer.name] = layer
    return pairs


def fold_batchnorm(model):
    """A copy of `model` with each Conv2D + BatchNorm pair folded into one conv."""
    pairs = _conv_bn_pairs(model)
    folded_bns = {bn.name for bn in pairs.values()}

    def clone(layer):
        if layer.name in folded_bns:
            return FoldedBatchNorm(name=layer.name)
        config = layer.get_config()
        if layer.name in pairs:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    twin = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if not layer.weights or layer.name in folded_bns:
            continue
        target = twin.get_layer(layer.name)
        if layer.name not in pairs:
            target.set_weights(layer.get_weights())
            continue
        bn = pairs[layer.name]
        kernel = keras.ops.convert_to_numpy(layer.kernel).astype("float64")
        bias = (
            keras.ops.convert_to_numpy(layer.bias).astype("float64")
            if layer.use_bias
            else 0.0
        )
        gamma, beta, mean, var = (
            keras.ops.convert_to_numpy(w).astype("float64")
            for w in (bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance)
        )
        scale = gamma / np.sqrt(var + bn.epsilon)
        target.set_weights([
            (kernel * scale).astype("float32"),  # HWIO: scales the output channel
            ((bias - mean) * scale + beta).astype("float32"),
        ])
    return twin
