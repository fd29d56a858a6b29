import keras
import numpy as np
import pytest

from hrnet_keras import create_model
from hrnet_keras.inference import fold_batchnorm


def test_folded_model_keeps_the_logits(w18_files, images, reference_w18_logits):
    model = create_model("hrnet-w18", weights=w18_files["mmcls"], classifier_activation=None)
    folded = fold_batchnorm(model)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    assert sum(isinstance(l, keras.layers.Conv2D) and l.use_bias for l in folded.layers) == 325
    got = keras.ops.convert_to_numpy(folded(images, training=False))
    assert np.abs(got - reference_w18_logits).max() <= 1e-4


def test_fold_leaves_the_original_untouched():
    model = create_model("hrnet-w18", include_top=False, pooling="avg", input_shape=(64, 64, 3))
    before = [w.copy() for w in model.get_weights()]
    fold_batchnorm(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    with pytest.raises(ValueError):
        model.get_layer("backbone__bn1__folded")
