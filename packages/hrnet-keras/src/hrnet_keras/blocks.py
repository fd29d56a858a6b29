"""Keras layers for the HRNet graph of `architecture`: `KERAS_LAYERS` builds it.

Each layer is named `layer_name(torch module path)`, so loading a checkpoint is a plain
map from layer name to tensor names (`torch_prefix`).
"""

import contextlib
import contextvars

import keras
from keras import layers

from hrnet_keras.architecture import layer_name
from hrnet_keras.configs import BN_EPSILON, BN_MOMENTUM
from hrnet_keras.initializers import NUMPY_CONV_INIT, NUMPY_DENSE_INIT

_FOLDED = contextvars.ContextVar("hrnet_keras_folded", default=False)
_POOLING = {"avg": layers.GlobalAveragePooling2D, "max": layers.GlobalMaxPooling2D}


def channel_axis():
    return -1 if keras.config.image_data_format() == "channels_last" else 1


@contextlib.contextmanager
def folded():
    """Inside, `KERAS_LAYERS` builds each conv-BN pair already folded: a conv with a bias, then a
    `keras.layers.Identity` named as its BatchNorm (the layers `fold_batchnorm` makes)."""
    token = _FOLDED.set(True)
    try:
        yield
    finally:
        _FOLDED.reset(token)


class KerasLayers:
    """`architecture`'s layer constructors, called on Keras tensors; `dtype`: the dtype
    policy of the pooling and dense layers (None: the global policy)."""

    def __init__(self, dtype=None):
        self.dtype = dtype

    def channels(self, x):
        return x.shape[channel_axis()]

    def zero_padding(self, x, padding, name):
        return layers.ZeroPadding2D(padding, name=layer_name(name))(x)

    def conv(self, x, filters, kernel_size, *, strides, padding, name):
        return layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            padding=padding,
            use_bias=_FOLDED.get(),
            kernel_initializer=NUMPY_CONV_INIT,
            name=layer_name(name),
        )(x)

    def batch_norm(self, x, name):
        if _FOLDED.get():
            return layers.Identity(name=layer_name(name))(x)
        return layers.BatchNormalization(
            axis=channel_axis(), epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=layer_name(name)
        )(x)

    def relu(self, x, name):
        return layers.ReLU(name=layer_name(name))(x)

    def add(self, inputs, name):
        return layers.Add(name=layer_name(name))(inputs)

    def upsample(self, x, factor, name):
        return layers.UpSampling2D(factor, interpolation="nearest", name=layer_name(name))(x)

    def global_pool(self, x, kind, name):
        return _POOLING[kind](name=layer_name(name), dtype=self.dtype)(x)

    def dense(self, x, units, activation, name):
        return layers.Dense(
            units,
            activation=activation,
            kernel_initializer=NUMPY_DENSE_INIT,
            name=layer_name(name),
            dtype=self.dtype,
        )(x)


KERAS_LAYERS = KerasLayers()
