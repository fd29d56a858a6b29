import numpy as np
import pytest

import hrnet_keras
from hrnet_keras import create_model


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, size=shape).astype("float32")


def test_classifier_odd_batch_and_custom_head():
    model = create_model("hrnet-w18", classes=10, input_shape=(64, 96, 3))
    probs = np.asarray(model.predict(_rand(5, 64, 96, 3), batch_size=5, verbose=0))
    assert probs.shape == (5, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    # a batch of one gives the same row as inside a batch of five
    single = np.asarray(model.predict(_rand(5, 64, 96, 3)[2:3], verbose=0))
    np.testing.assert_allclose(single[0], probs[2], atol=1e-5)


@pytest.mark.parametrize(
    "pooling, shape", [(None, (3, 2, 3, 2048)), ("avg", (3, 2048)), ("max", (3, 2048))]
)
def test_headless_outputs(pooling, shape):
    model = create_model("hrnet-w18", include_top=False, pooling=pooling)
    out = np.asarray(model.predict(_rand(3, 64, 96, 3), verbose=0))
    assert out.shape == shape
    assert np.isfinite(out).all()


def test_features_only_returns_four_branches_at_any_size_divisible_by_32():
    model = create_model("hrnet-w18", features_only=True)
    outs = model.predict(_rand(1, 96, 160, 3), verbose=0)
    assert [tuple(o.shape) for o in outs] == [
        (1, 24, 40, 18),
        (1, 12, 20, 36),
        (1, 6, 10, 72),
        (1, 3, 5, 144),
    ]
    assert not any(layer.name.startswith(("neck", "head")) for layer in model.layers)


def test_pooling_must_be_known():
    with pytest.raises(ValueError, match="pooling"):
        create_model("hrnet-w18", include_top=False, pooling="mean")


@pytest.mark.parametrize("width", [18, 30, 32, 40, 44, 48, 64])
def test_keras_applications_constructors(width):
    constructor = getattr(hrnet_keras, f"HRNetW{width}")
    assert constructor.__name__ == f"HRNetW{width}"
    if width == 18:
        model = constructor(include_top=False, pooling="avg", input_shape=(64, 64, 3))
        assert model.output.shape == (None, 2048)
        assert model.input.shape == (None, 64, 64, 3)


def test_weight_layers_are_named_after_checkpoint_keys():
    model = create_model("hrnet-w18")
    names = {layer.name for layer in model.layers if layer.weights}
    assert {"backbone__conv1", "backbone__bn1", "head__fc"} <= names
    assert "backbone__stage4__2__fuse_layers__0__3__0" in names  # 1x1 conv, branch 3 -> 0
    assert "backbone__stage4__2__fuse_layers__3__0__2__0" in names  # third stride-2 step
    assert "neck__0__downsample_layers__2__conv" in names
