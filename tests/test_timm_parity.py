"""timm's HRNets against the Keras models, on this process's backend.

timm (pinned in requirements.txt) builds each architecture with random weights and
random BatchNorm statistics; its state dict is saved as safetensors (as timm publishes
weights), converted, and the logits / feature maps compared. Small inputs keep it quick.
A feature pyramid saved as `.keras` loads back with its `feature_info`.
"""

import keras
import numpy as np
import pytest
import reference_model

from hrnet_keras import create_model

TOLERANCE = 1e-4  # max |diff| relative to the largest reference value
SIZE = 128


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(1).standard_normal((2, SIZE, SIZE, 3)).astype("float32")


def _relative(got, want):
    diff = float(np.abs(got - want).max())
    return diff, diff / float(np.abs(want).max())


@pytest.mark.parametrize(
    "arch, timm_name",
    [("hrnet-w18-small", "hrnet_w18_small"), ("hrnet-w18-small-v2", "hrnet_w18_small_v2")],
)
def test_logits_equal_timm(tmp_path, pixels, arch, timm_name):
    path = tmp_path / f"{timm_name}.safetensors"
    timm_model, _ = reference_model.timm_checkpoint(timm_name, path, seed=7)
    want = reference_model.timm_forward(timm_model, pixels)
    model = create_model(arch, weights=path, classifier_activation=None)
    got = keras.ops.convert_to_numpy(model(pixels, training=False))
    diff, rel = _relative(got, want)
    print(f"{keras.backend.backend()} {arch} logits vs timm: max |diff| {diff:.2e}, rel {rel:.2e}")
    assert rel <= TOLERANCE, (diff, rel)


@pytest.mark.parametrize(
    "arch, timm_name, location",
    [
        ("hrnet-w18", "hrnet_w18", "incre"),
        ("hrnet-w18-small", "hrnet_w18_small", "incre"),
        ("hrnet-w18-small", "hrnet_w18_small", ""),
    ],
)
def test_features_equal_timm_features_only(tmp_path, pixels, arch, timm_name, location):
    indices = (0, 1, 2, 3, 4)
    path = tmp_path / f"{timm_name}.safetensors"
    timm_model, _ = reference_model.timm_checkpoint(
        timm_name, path, seed=11, features_only=True, feature_location=location, out_indices=indices
    )
    want = reference_model.timm_forward(timm_model, pixels)
    model = create_model(
        arch, weights=path, features_only=True, out_indices=indices, feature_location=location
    )
    assert model.feature_info.channels() == timm_model.feature_info.channels()
    assert model.feature_info.reduction() == timm_model.feature_info.reduction()
    got = [keras.ops.convert_to_numpy(t) for t in model(pixels, training=False)]
    for info, g, w in zip(model.feature_info, got, want):
        assert g.shape == w.shape, (info, g.shape, w.shape)
        assert g.shape[1] == SIZE // info["reduction"] and g.shape[-1] == info["num_chs"]
        diff, rel = _relative(g, w)
        print(
            f"{keras.backend.backend()} {arch} features[{location or 'branches'}] "
            f"{info['name']}: max |diff| {diff:.2e}, rel {rel:.2e}"
        )
        assert rel <= TOLERANCE, (info, diff, rel)
    if arch == "hrnet-w18-small" and location == "incre":  # the .keras file keeps it all
        model.save(tmp_path / "pyramid.keras")
        loaded = keras.models.load_model(tmp_path / "pyramid.keras")
        assert loaded.feature_info == model.feature_info
        assert list(loaded.pyramid_outputs) == ["P1", "P2", "P3", "P4", "P5"]
        again = [keras.ops.convert_to_numpy(t) for t in loaded(pixels, training=False)]
        assert all(np.array_equal(a, b) for a, b in zip(again, got))
