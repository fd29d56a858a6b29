"""Mixed precision as KerasHub does it: the backbone in the global half-precision policy, the
head (pooling and classifier) in float32, float32 logits out."""

import keras
import numpy as np
import pytest

from hrnet_keras import create_model
from hrnet_keras.blocks import layer_name


@pytest.fixture
def policy():
    old = keras.config.dtype_policy()
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy(old)


@pytest.mark.parametrize("mixed", ["mixed_bfloat16", "mixed_float16"])
def test_the_head_stays_float32_under_a_mixed_policy(policy, mixed):
    policy(mixed)
    keras.utils.set_random_seed(0)
    model = create_model("hrnet-w18-small", input_shape=(64, 64, 3))
    half = mixed.removeprefix("mixed_")
    head = [model.get_layer(layer_name(n)) for n in ("neck.1", "head.fc")]
    assert [layer.dtype_policy.name for layer in head] == ["float32", "float32"]
    assert model.get_layer(layer_name("backbone.conv1")).compute_dtype == half
    x = np.random.default_rng(0).uniform(-2, 2, (2, 64, 64, 3)).astype("float32")
    probs = model(x, training=False)
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    assert np.allclose(keras.ops.convert_to_numpy(keras.ops.sum(probs, axis=-1)), 1, atol=1e-5)
    other = create_model("hrnet-w18-small", input_shape=(64, 64, 3), head_dtype=mixed)
    logits = other(x, training=False)
    assert keras.backend.standardize_dtype(logits.dtype) == half  # KerasHub's option kept


def test_float32_policy_is_unchanged(policy):
    model = create_model("hrnet-w18-small", input_shape=(64, 64, 3))
    assert {layer.compute_dtype for layer in model.layers if layer.weights} == {"float32"}
