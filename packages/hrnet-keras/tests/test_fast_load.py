"""Loading a saved HRNet `.keras` runs none of Keras' random initialisers (on JAX one XLA
compile per weight shape); what the file records and holds is unchanged. Speed:
`benchmarks/load_keras.py`."""

import json
import zipfile

import keras
import numpy as np
import pytest

from hrnet_keras import create_model
from hrnet_keras.blocks import layer_name

RANDOM = (keras.initializers.VarianceScaling, keras.initializers.GlorotUniform)


@pytest.fixture
def saved(tmp_path):
    keras.utils.set_random_seed(1)
    model = create_model("hrnet-w18-small", input_shape=(64, 64, 3), classifier_activation=None)
    model.save(tmp_path / "m.keras")
    return model, tmp_path / "m.keras"


@pytest.fixture
def no_keras_random_init(monkeypatch):
    def refuse(self, shape, dtype=None):
        raise AssertionError(f"Keras' {type(self).__name__} ran for a weight of shape {shape}")

    for kind in RANDOM:
        monkeypatch.setattr(kind, "__call__", refuse)


def _config(archive):
    """config.json less Keras' `shared_object_id` bookkeeping (which objects were shared)."""

    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k != "shared_object_id"}
        return [strip(v) for v in x] if isinstance(x, list) else x

    return strip(json.loads(archive.read("config.json")))


def _values(model):
    return [keras.ops.convert_to_numpy(w) for w in model.weights]


def test_load_model_runs_no_keras_initialiser_and_keeps_everything(saved, no_keras_random_init):
    model, path = saved
    loaded = keras.models.load_model(path)
    assert all(np.array_equal(a, b) for a, b in zip(_values(model), _values(loaded)))
    conv = loaded.get_layer(layer_name("backbone.conv1"))
    assert isinstance(conv.kernel_initializer, keras.initializers.VarianceScaling)
    assert loaded.pretrained_cfg == model.pretrained_cfg
    again = path.with_name("again.keras")
    loaded.save(again)
    with zipfile.ZipFile(path) as a, zipfile.ZipFile(again) as b:
        assert _config(a) == _config(b)  # the same Keras initialisers recorded
    same = create_model("hrnet-w18-small", input_shape=(64, 64, 3), weights=path)
    assert all(np.array_equal(a, b) for a, b in zip(_values(model), _values(same)))


def test_from_config_alone_still_draws_fresh_weights(saved):
    model, _ = saved
    fresh = type(model).from_config(model.get_config())
    kernel = keras.ops.convert_to_numpy(fresh.get_layer(layer_name("backbone.conv2")).kernel)
    assert abs(kernel.std() / np.sqrt(2.0 / (3 * 3 * 64)) - 1) < 0.05  # Kaiming, fan_out
    gamma = fresh.get_layer(layer_name("backbone.bn1")).gamma
    assert np.array_equal(keras.ops.convert_to_numpy(gamma), np.ones(64))
