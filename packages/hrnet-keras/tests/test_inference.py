import keras
import numpy as np
import pytest

from hrnet_keras import create_model
from hrnet_keras.inference import FoldedBatchNorm, fold_batchnorm, inference_function


def test_folded_model_keeps_the_logits(w18_files, images, reference_w18_logits):
    model = create_model("hrnet-w18", weights=w18_files["mmcls"], classifier_activation=None)
    folded = fold_batchnorm(model)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in folded.layers)
    assert (
        sum(isinstance(layer, keras.layers.Conv2D) and layer.use_bias for layer in folded.layers)
        == 325
    )
    got = keras.ops.convert_to_numpy(folded(images, training=False))
    assert np.abs(got - reference_w18_logits).max() <= 1e-4


@pytest.mark.parametrize("pooling", ["avg", None])
def test_channels_first_twin_takes_and_returns_channels_last(pooling):
    keras.utils.set_random_seed(1)
    model = create_model("hrnet-w18", include_top=False, pooling=pooling, input_shape=(64, 64, 3))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    twin = fold_batchnorm(model, data_format="channels_first")
    convs = [layer for layer in twin.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.data_format == "channels_first" for layer in convs)
    assert twin.input.shape == model.input.shape and twin.output.shape == model.output.shape
    want = keras.ops.convert_to_numpy(model(x, training=False))
    for got in (keras.ops.convert_to_numpy(twin(x, training=False)), inference_function(twin)(x)):
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


def test_fold_leaves_the_original_untouched():
    model = create_model("hrnet-w18", include_top=False, pooling="avg", input_shape=(64, 64, 3))
    before = [w.copy() for w in model.get_weights()]
    twin = fold_batchnorm(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert isinstance(twin.get_layer("backbone__bn1"), FoldedBatchNorm)
    assert isinstance(model.get_layer("backbone__bn1"), keras.layers.BatchNormalization)


def test_unknown_layout_is_refused():
    model = create_model("hrnet-w18", include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="data_format must be"):
        fold_batchnorm(model, data_format="NCHW")
