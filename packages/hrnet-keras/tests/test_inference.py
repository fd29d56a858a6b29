import warnings

import keras
import numpy as np
import pytest

from hrnet_keras import create_model
from hrnet_keras import inference
from hrnet_keras.inference import fold_batchnorm, inference_function, optimize_for_inference


def test_folded_model_keeps_the_logits(w18_files, images, reference_w18, reference_w18_logits):
    import torch

    model = create_model("hrnet-w18", weights=w18_files["mmcls"], classifier_activation=None)
    batchnorms = sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert batchnorms == sum(isinstance(m, torch.nn.BatchNorm2d) for m in reference_w18.modules())
    folded = fold_batchnorm(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert (  # each BatchNorm became its conv's bias
        sum(isinstance(layer, keras.layers.Conv2D) and layer.use_bias for layer in folded.layers)
        == batchnorms
    )
    got = keras.ops.convert_to_numpy(folded(images, training=False))
    assert np.abs(got - reference_w18_logits).max() <= 1e-4


@pytest.mark.parametrize("pooling", ["avg", None])
def test_channels_first_twin_takes_and_returns_channels_last(pooling):
    keras.utils.set_random_seed(1)
    model = create_model(
        "hrnet-w18-small", include_top=False, pooling=pooling, input_shape=(64, 64, 3)
    )
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    twin = fold_batchnorm(model, data_format="channels_first")
    convs = [layer for layer in twin.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.data_format == "channels_first" for layer in convs)
    assert twin.input.shape == model.input.shape and twin.output.shape == model.output.shape
    want = keras.ops.convert_to_numpy(model(x, training=False))
    for got in (keras.ops.convert_to_numpy(twin(x, training=False)), inference_function(twin)(x)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_fold_leaves_the_original_untouched():
    model = create_model(
        "hrnet-w18-small", include_top=False, pooling="avg", input_shape=(64, 64, 3)
    )
    before = [w.copy() for w in model.get_weights()]
    twin = fold_batchnorm(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert type(twin.get_layer("backbone__bn1")) is keras.layers.Identity
    assert isinstance(model.get_layer("backbone__bn1"), keras.layers.BatchNormalization)


def test_unknown_layout_is_refused():
    model = create_model("hrnet-w18-small", include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="data_format must be"):
        fold_batchnorm(model, data_format="NCHW")


def test_conv_bn_refuses_a_batchnorm_the_fold_would_not_find():
    from hrnet_keras.architecture import conv_bn
    from hrnet_keras.blocks import KERAS_LAYERS

    with pytest.raises(ValueError, match="batchnorm_name"):
        conv_bn(KERAS_LAYERS, keras.Input((8, 8, 3)), 4, 3, conv="a.conv1", bn="a.norm1")


def test_uint8_input_and_top_k_agree_with_the_float_path():
    from hrnet_keras.preprocessing import preprocess_input

    keras.utils.set_random_seed(2)
    model = create_model("hrnet-w18-small", input_shape=(64, 64, 3), classifier_activation=None)
    pixels = np.random.default_rng(2).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    logits = optimize_for_inference(model)(preprocess_input(pixels))
    top5 = optimize_for_inference(model, from_uint8=True, top_k=5)(pixels)
    assert top5.shape == (2, 5)
    np.testing.assert_array_equal(top5, np.argsort(-logits, axis=1)[:, :5])
    lazy = optimize_for_inference(model, from_uint8=True, to_numpy=False)(pixels)
    assert not isinstance(lazy, np.ndarray)
    got = keras.ops.convert_to_numpy(lazy)
    assert np.abs(got - logits).max() <= 1e-4 * np.abs(logits).max()


def _graph_walk_owner(model):
    """The Keras class that defines the private `_run_through_graph`."""
    return next(c for c in type(model).__mro__ if "_run_through_graph" in vars(c))


@pytest.mark.parametrize("break_it", ["missing", "ignores the operation"])
def test_graph_runner_falls_back_to_the_plain_call_without_the_graph_walk(monkeypatch, break_it):
    keras.utils.set_random_seed(3)
    model = create_model(
        "hrnet-w18-small", include_top=False, pooling="avg", input_shape=(64, 64, 3)
    )
    x = np.random.default_rng(3).uniform(-1, 1, (1, 64, 64, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(model(x, training=False))
    inference.graph_walk_works.cache_clear()
    assert inference.graph_walk_works()  # this Keras: the walk is taken, without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        walk = inference.graph_runner(model, lambda layer: layer)
    owner = _graph_walk_owner(model)
    if break_it == "missing":
        monkeypatch.delattr(owner, "_run_through_graph")
    else:
        original = owner._run_through_graph

        def ignores_operation_fn(self, inputs, operation_fn=None, call_fn=None):
            return original(self, inputs, call_fn=call_fn)

        monkeypatch.setattr(owner, "_run_through_graph", ignores_operation_fn)
    inference.graph_walk_works.cache_clear()
    try:
        assert not inference.graph_walk_works()
        with pytest.warns(UserWarning, match="private graph walk"):
            plain = inference.graph_runner(model, lambda layer: layer)
    finally:
        inference.graph_walk_works.cache_clear()
    monkeypatch.undo()
    for forward in (walk, plain):
        got = keras.ops.convert_to_numpy(forward(keras.ops.convert_to_tensor(x)))
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_folded_model_saves_and_loads_as_plain_keras(tmp_path):
    keras.utils.set_random_seed(4)
    model = create_model("hrnet-w18-small", input_shape=(64, 64, 3), classifier_activation=None)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    path = str(tmp_path / "folded.keras")
    fold_batchnorm(model).save(path)
    loaded = keras.models.load_model(path, compile=False)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in loaded.layers)
    want = keras.ops.convert_to_numpy(model(x, training=False))
    got = keras.ops.convert_to_numpy(loaded(x, training=False))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def _trained_statistics(model):
    """BatchNorm statistics of a trained model, not the defaults."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            rng = np.random.default_rng(len(layer.name))
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
    return model


@pytest.mark.parametrize("name", ["hrnet-w18-small", "hrnet_w18_small_v2.gluon_in1k"])
def test_folded_model_is_the_twin_fold_batchnorm_makes(name):
    from hrnet_keras.inference import fold_weights, folded_model

    keras.utils.set_random_seed(5)
    model = _trained_statistics(
        create_model(name, input_shape=(64, 64, 3), classifier_activation=None)
    )
    clone = fold_batchnorm(model)
    twin = folded_model(name, input_shape=(64, 64, 3), classifier_activation=None)
    assert [(type(a), a.name) for a in twin.layers] == [(type(b), b.name) for b in clone.layers]
    fold_weights(model, twin)
    for a, b in zip(twin.weights, clone.weights):
        assert a.path == b.path and np.array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(5).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(model(x, training=False))
    got = keras.ops.convert_to_numpy(twin(x, training=False))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    # the folded build ends with its block: the next model is the usual one
    assert any(
        isinstance(layer, keras.layers.BatchNormalization)
        for layer in create_model(name, include_top=False, input_shape=(64, 64, 3)).layers
    )
    with pytest.raises(ValueError, match="fold_weights"):
        folded_model(name, weights="imagenet")


@pytest.mark.parametrize("name", ["hrnet-w18-small", "hrnet_w18_small_v2.gluon_in1k"])
def test_folded_weights_read_from_a_file_are_those_of_the_model_folded(name, tmp_path):
    """`load_folded_weights` (no unfolded model built) sets the twin bit for bit as
    `fold_weights` does from the model that file loads into; a file of another head or a
    truncated one is refused, naming the file."""
    from hrnet_keras.inference import (
        FoldedWeightsError,
        fold_weights,
        folded_model,
        load_folded_weights,
    )

    def twin():
        return folded_model(name, input_shape=(64, 64, 3), classifier_activation=None)

    keras.utils.set_random_seed(6)
    model = _trained_statistics(
        create_model(name, input_shape=(64, 64, 3), classifier_activation=None)
    )
    path = tmp_path / "row.weights.h5"
    model.save_weights(path)
    want, got = twin(), twin()
    fold_weights(create_model(name, weights=str(path), input_shape=(64, 64, 3)), want)
    load_folded_weights(got, str(path))
    assert len(got.weights) == len(want.weights)
    for a, b in zip(got.weights, want.weights):
        assert a.path == b.path and np.array_equal(a.numpy(), b.numpy()), a.path

    headless = tmp_path / "headless.weights.h5"
    create_model(name, include_top=False, input_shape=(64, 64, 3)).save_weights(headless)
    with pytest.raises(FoldedWeightsError, match="headless.weights.h5: layers/dense"):
        load_folded_weights(twin(), str(headless))
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(path.read_bytes()[:4096])
    with pytest.raises(FoldedWeightsError, match="truncated.weights.h5: KerasFileEditor"):
        load_folded_weights(twin(), str(truncated))
