"""Temporary check of the Pants setup (to be replaced by the real tests)."""

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np

if TYPE_CHECKING:  # makes Pants put the package and its data in the sandbox, unimported
    import hrnet_keras  # noqa: F401


def test_backend_is_the_one_asked_for():
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]


def test_dense_layer_computes():
    layer = keras.layers.Dense(3, kernel_initializer="ones", bias_initializer="zeros")
    x = np.arange(8, dtype="float32").reshape(2, 4)
    y = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y, np.repeat(x.sum(axis=1, keepdims=True), 3, axis=1))


def test_package_data_is_shipped():
    spec = importlib.util.find_spec("hrnet_keras")
    assert spec is not None
    (location,) = spec.submodule_search_locations
    assert (Path(location) / "presets.json").is_file()
