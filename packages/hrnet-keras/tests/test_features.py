import keras
import numpy as np
import pytest

from hrnet_keras import create_model
from hrnet_keras.features import FeaturePyramidModel


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).uniform(-2, 2, size=shape).astype("float32")


def test_default_is_the_four_branches_with_their_metadata():
    model = create_model("hrnet-w18-small", features_only=True)
    assert isinstance(model, FeaturePyramidModel)
    assert model.feature_info.channels() == [16, 32, 64, 128]
    assert model.feature_info.reduction() == [4, 8, 16, 32]
    assert [f["name"] for f in model.feature_info] == ["P2", "P3", "P4", "P5"]
    assert list(model.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    outs = model.predict(_rand(1, 64, 96, 3), verbose=0)
    assert [o.shape for o in outs] == [
        (1, 16, 24, 16),
        (1, 8, 12, 32),
        (1, 4, 6, 64),
        (1, 2, 3, 128),
    ]


def test_out_indices_and_incre_location_in_timms_numbering():
    model = create_model(
        "hrnet-w18-small", features_only=True, out_indices=(2, 0), feature_location="incre"
    )
    assert [(f["index"], f["num_chs"], f["reduction"]) for f in model.feature_info] == [
        (0, 64, 2),
        (2, 256, 8),
    ]
    assert [f["module"] for f in model.feature_info] == ["stem", "stage2"]
    outs = model.predict(_rand(1, 64, 64, 3), verbose=0)
    assert [o.shape for o in outs] == [(1, 32, 32, 64), (1, 8, 8, 256)]
    # only the incre module of the branch asked for is built
    names = {layer.name for layer in model.layers}
    assert "neck__0__increase_layers__1__0__conv1" in names
    assert "neck__0__increase_layers__0__0__conv1" not in names


def test_feature_info_survives_load_model_and_feeds_a_kerashub_style_head(tmp_path):
    model = create_model(
        "hrnet-w18-small", features_only=True, out_indices=(0, 1, 4), feature_location="incre"
    )
    path = tmp_path / "pyramid.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is FeaturePyramidModel
    assert loaded.feature_info == model.feature_info
    assert loaded.feature_info.channels() == [64, 128, 1024]
    x = _rand(2, 64, 64, 3)
    for a, b in zip(model.predict(x, verbose=0), loaded.predict(x, verbose=0)):
        np.testing.assert_array_equal(a, b)
    pyramid = keras.Model(loaded.inputs, loaded.pyramid_outputs)  # what KerasHub heads take
    out = pyramid.predict(x, verbose=0)
    assert sorted(out) == ["P1", "P2", "P5"] and out["P5"].shape == (2, 2, 2, 1024)


def test_stem_only_model_takes_a_full_checkpoint(w18_files, reference_w18):
    model = create_model(
        "hrnet-w18", features_only=True, out_indices=(0,), weights=w18_files["mmcls"]
    )
    assert model.feature_info.channels() == [64]
    want = reference_w18.state_dict()["backbone.conv1.weight"].numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(model.get_layer("backbone__conv1").get_weights()[0], want)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"out_indices": (1, 5)}, r"out_indices must be distinct integers in 0\.\.4"),
        ({"out_indices": (1, 1)}, "out_indices must be distinct"),
        ({"out_indices": ()}, "out_indices must be distinct"),
        ({"feature_location": "branches"}, "feature_location must be ''"),
    ],
)
def test_feature_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model("hrnet-w18-small", features_only=True, **kwargs)


def test_out_indices_need_features_only():
    with pytest.raises(ValueError, match="need features_only=True"):
        create_model("hrnet-w18-small", out_indices=(1, 2))
