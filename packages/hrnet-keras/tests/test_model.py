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


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"weights": "imagenet", "classes": 10}, "needs classes=1000"),
        ({"weights": "hrnet-w18-ssld", "classes": 10}, "needs classes=1000"),
        ({"weights": "no/such/file.weights.h5"}, "neither a known row"),
        ({"input_tensor": np.zeros((1, 64, 64, 3))}, "input_tensor must be a Keras tensor"),
        ({"input_shape": (100, 64, 3)}, "multiples of 32"),
        ({"input_shape": (64, 64, 4)}, "3 channels"),
        ({"features_only": True, "pooling": "avg"}, "pooling must be None"),
        ({"classes": 0}, "classes must be a positive integer"),
    ],
)
def test_arguments_are_checked_before_building(kwargs, message, monkeypatch):
    from hrnet_keras import network

    def no_build(*args, **kw):
        raise AssertionError("built before checking the arguments")

    monkeypatch.setattr(network, "build", no_build)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        create_model("hrnet-w18", **kwargs)


def test_input_tensor_may_be_an_intermediate_keras_tensor():
    import keras

    pixels = keras.Input((64, 64, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255)(pixels)
    model = create_model("hrnet-w18", input_tensor=x, include_top=False, pooling="avg")
    assert model.input is pixels
    assert model.output.shape == (None, 2048)


def test_checkpoint_package_never_imports_the_model_builder():
    """hrnet_keras.checkpoints reads, maps and assigns; only its `conversion` builds (the
    classifier it writes, through `network`); `create_model` is model.py's, the CLI convert.py's."""
    import ast
    import pathlib

    import hrnet_keras.checkpoints as checkpoints

    builders = {"hrnet_keras.model", "hrnet_keras.network", "hrnet_keras.loading"}
    builders |= {"hrnet_keras.convert", "hrnet_keras"}
    for path in pathlib.Path(checkpoints.__file__).parent.glob("*.py"):
        refused = builders - {"hrnet_keras.network"} if path.name == "conversion.py" else builders
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            else:
                continue
            assert not names & refused, f"{path.name} imports {names & refused}"


def test_checkpoint_package_imports_no_keras():
    """Fetching, checksums and reading stay light: `conversion` and `keymap` load Keras."""
    import subprocess
    import sys

    code = (
        "import sys; from hrnet_keras.checkpoints import checkpoint_url, checksums, download, "
        "hub, layouts, reader; from hrnet_keras.configs import get_preset; "
        "checkpoint_url(get_preset('hrnet-w18')); "
        "assert 'keras' not in sys.modules, 'keras imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
