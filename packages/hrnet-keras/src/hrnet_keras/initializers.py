"""Weight initialisation drawn with NumPy at build time.

HRNet's init is mmengine's Kaiming normal (fan_out, ReLU) for convs. On JAX,
Keras' random initialisers compile one XLA program per weight shape (about 60
for HRNet, 30-60 s on 2 cores); drawing with NumPy avoids that, and gives the
same weights on every backend after `keras.utils.set_random_seed`. Once the
model is built the layers carry Keras' own equivalent initialiser, so saved
`.keras` files name only Keras classes.
"""

import math

import keras
import numpy as np

CONV_INIT = keras.initializers.VarianceScaling(
    scale=2.0, mode="fan_out", distribution="untruncated_normal"
)
DENSE_INIT = keras.initializers.GlorotUniform()


class NumpyVarianceScaling(keras.initializers.Initializer):
    """`VarianceScaling` (untruncated normal or uniform) from NumPy's global RNG."""

    def __init__(self, scale, mode, distribution):
        self.scale, self.mode, self.distribution = scale, mode, distribution

    def __call__(self, shape, dtype=None):
        receptive = math.prod(shape[:-2]) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}
        variance = self.scale / max(1.0, fan[self.mode])
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            value = np.random.uniform(-limit, limit, size=shape)
        else:
            value = np.random.normal(0.0, math.sqrt(variance), size=shape)
        return keras.ops.convert_to_tensor(value, dtype=dtype or "float32")


class NumpyZeros(keras.initializers.Initializer):
    """Zeros made by NumPy: for variables that are overwritten right after they are built."""

    def __call__(self, shape, dtype=None):
        return keras.ops.convert_to_tensor(np.zeros(shape), dtype=dtype or "float32")


NUMPY_CONV_INIT = NumpyVarianceScaling(2.0, "fan_out", "normal")
NUMPY_DENSE_INIT = NumpyVarianceScaling(1.0, "fan_avg", "uniform")


def declare_keras_initializers(model):
    """Point built layers at Keras' own initialisers (what `.keras` files record)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel_initializer = CONV_INIT
        elif isinstance(layer, keras.layers.Dense):
            layer.kernel_initializer = DENSE_INIT
