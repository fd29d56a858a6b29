"""`HRNetModel`: the functional Keras model `create_model` returns, with its `pretrained_cfg`.

Registered as `hrnet_keras>HRNetModel`, so a saved `.keras` file records it and
`keras.models.load_model` revives it (after `import hrnet_keras.keras_model`, or any model
call of hrnet_keras, has registered the class) with its `pretrained_cfg`. Reviving draws
the layers' initial weights with NumPy (`initializers.py`: the same distributions as the
Keras initialisers the file records, which the layers carry again afterwards): on JAX,
Keras' own random initialisers compile one XLA program per weight shape, the most of a
load's time, for weights that the file's then overwrite.
"""

import copy

import keras
import numpy as np

from hrnet_keras.initializers import NumpyVarianceScaling, NumpyZeros


class NumpyOnes(keras.initializers.Initializer):
    """Ones made by NumPy (BatchNorm's gamma and moving variance)."""

    def __call__(self, shape, dtype=None):
        return keras.ops.convert_to_tensor(np.ones(shape), dtype=dtype or "float32")


# The NumPy twin of each Keras initialiser HRNet's layers record: config -> initializer.
_NUMPY_TWINS = {
    "Zeros": lambda config: NumpyZeros(),
    "Ones": lambda config: NumpyOnes(),
    "GlorotUniform": lambda config: NumpyVarianceScaling(1.0, "fan_avg", "uniform"),
    "VarianceScaling": lambda config: (
        NumpyVarianceScaling(
            config["scale"],
            config["mode"],
            "normal" if config["distribution"] == "untruncated_normal" else "uniform",
        )
        if config["distribution"] in ("untruncated_normal", "uniform")
        else None
    ),
}


def _numpy_twins(config):
    """A copy of a functional config whose layers take NumPy twins of their Keras
    initialisers, and {layer name: {argument: the Keras initialiser's config}}."""
    config = copy.deepcopy(config)
    originals = {}
    for layer in config["layers"]:
        inner = layer.get("config", {})
        for key, value in list(inner.items()):
            if not key.endswith("_initializer") or not isinstance(value, dict):
                continue
            if value.get("module") not in ("keras.initializers", "keras"):
                continue
            twin = _NUMPY_TWINS.get(value.get("class_name"), lambda config: None)(
                value.get("config") or {}
            )
            if twin is not None:  # an object: the layer's constructor takes it as it is
                originals.setdefault(inner["name"], {})[key] = value
                inner[key] = twin
    return config, originals


@keras.saving.register_keras_serializable(package="hrnet_keras")
class HRNetModel(keras.Model):
    """A functional model that knows its row's test pipeline (`pretrained_cfg`, timm's name)."""

    # (*args, **kwargs): Keras revives it as a functional model, passing the config's extra
    # keys back here.
    def __init__(self, *args, pretrained_cfg=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pretrained_cfg = pretrained_cfg

    @property
    def pretrained_cfg(self):
        """The row's name, architecture and test pipeline (`hrnet_keras.data_config`)."""
        return self._pretrained_cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg):
        object.__setattr__(self, "_pretrained_cfg", None if cfg is None else dict(cfg))

    def get_config(self):
        config = super().get_config()
        if self.pretrained_cfg is not None:
            config["pretrained_cfg"] = dict(self.pretrained_cfg)
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Revive as Keras does, initial weights drawn with NumPy (see the module)."""
        config, originals = _numpy_twins(config)
        model = super().from_config(config, custom_objects=custom_objects)
        for layer in model.layers:
            for key, value in originals.get(layer.name, {}).items():
                setattr(layer, key, keras.initializers.get(value))
        return model
