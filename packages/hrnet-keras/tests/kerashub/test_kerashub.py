"""hrnet_keras.kerashub: KerasHub's backbone, classifier and preprocessor for HRNet.

W18-small at 64 px with seeded random weights, saved as the `.weights.h5` hrnet_keras
writes (what `convert` writes for a row).
"""

import os
import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest
import skimage.data
from huggingface_hub import constants
from hub_cache import cache_repo

import hrnet_keras
from hrnet_keras.kerashub import (
    HRNetBackbone,
    HRNetImageClassifier,
    HRNetImageClassifierPreprocessor,
    HRNetImageConverter,
)

ARCH = "hrnet-w18-small"
SIZE = 64
COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


def numpy(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """An hrnet_keras classifier (logits) and its weights file."""
    keras.utils.set_random_seed(11)
    model = hrnet_keras.create_model(ARCH, classifier_activation=None)
    path = tmp_path_factory.mktemp("weights") / f"{ARCH}.weights.h5"
    model.save_weights(path)
    return model, path


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(4).standard_normal((2, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def classifier(converted):
    return HRNetImageClassifier.from_row(ARCH, weights=converted[1])


@pytest.fixture(scope="module")
def preset(classifier, tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "hrnet_w18_small"
    classifier.save_to_preset(path)
    return path


def test_weights_converted_by_hrnet_keras_give_its_logits(converted, classifier, pixels):
    np.testing.assert_array_equal(numpy(classifier(pixels)), numpy(converted[0](pixels)))
    assert isinstance(classifier.backbone, HRNetBackbone)
    assert classifier.backbone.architecture == ARCH


def test_pyramid_outputs_are_the_stem_and_the_branches(classifier, pixels):
    backbone = classifier.backbone
    pyramid = keras.Model(backbone.inputs, backbone.pyramid_outputs)(pixels)
    shapes = {name: tuple(out.shape) for name, out in pyramid.items()}
    assert shapes == {
        "P1": (2, 32, 32, 64),
        "P2": (2, 16, 16, 16),
        "P3": (2, 8, 8, 32),
        "P4": (2, 4, 4, 64),
        "P5": (2, 2, 2, 128),
    }


def test_from_preset_of_a_saved_folder(classifier, preset, pixels):
    loaded = keras_hub.models.ImageClassifier.from_preset(str(preset))
    assert type(loaded) is HRNetImageClassifier
    assert type(loaded.preprocessor) is HRNetImageClassifierPreprocessor
    converter = loaded.preprocessor.image_converter
    assert (converter.image_size, converter.resize_short_edge) == ((224, 224), 256)
    np.testing.assert_array_equal(numpy(loaded(pixels)), numpy(classifier(pixels)))


def test_hf_handle_from_an_offline_cache(classifier, preset, pixels, tmp_path, monkeypatch):
    """The preset's files in a Hugging Face cache as huggingface_hub lays it out, offline.
    huggingface_hub reads HF_HOME and HF_HUB_OFFLINE when imported: set both, and its
    constants as they would be read."""
    home = tmp_path / "hf"
    files = {p.name: p.read_bytes() for p in preset.iterdir()}
    cache_repo(home / "hub", "someone/hrnet_w18_small", files, COMMIT)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    backbone = keras_hub.models.Backbone.from_preset("hf://someone/hrnet_w18_small")
    assert type(backbone) is HRNetBackbone
    np.testing.assert_array_equal(numpy(backbone(pixels)), numpy(classifier.backbone(pixels)))
    with pytest.raises(Exception, match="hrnet_w18_other"):
        keras_hub.models.Backbone.from_preset("hf://someone/hrnet_w18_other")


@pytest.mark.parametrize("row", ["hrnet-w18", "hrnet_w18_small.gluon_in1k"])
def test_image_converter_is_the_rows_pipeline(row):
    """Against hrnet_keras' `load_image` + `preprocess_input` (Pillow) on scikit-image's
    photos: bilinear within one level of 0-255 (rounding), bicubic too but for Pillow's
    clipping between its two passes."""
    converter = HRNetImageConverter.from_row(row)
    std = np.asarray(hrnet_keras.data_config(row)["std"]) * 255
    for image in (skimage.data.chelsea(), skimage.data.rocket(), skimage.data.astronaut()):
        got = numpy(converter(image))
        want = hrnet_keras.preprocess_input(hrnet_keras.load_image(image, model=row), model=row)
        levels = np.abs(got - want) * std
        assert got.shape == want.shape == (224, 224, 3)
        assert np.quantile(levels, 0.999) <= 1.0 + 1e-3
        assert levels.max() <= (1.0 + 1e-3 if row == "hrnet-w18" else 6.0)


def test_a_segmenter_runs_on_the_pyramid(classifier):
    backbone = keras_hub.models.DeepLabV3Backbone(
        image_encoder=classifier.backbone,
        low_level_feature_key="P2",
        spatial_pyramid_pooling_key="P5",
        upsampling_size=8,
        dilation_rates=[1, 2],
        image_shape=(SIZE, SIZE, 3),
    )
    segmenter = keras_hub.models.DeepLabV3ImageSegmenter(backbone=backbone, num_classes=3)
    out = numpy(segmenter(np.ones((1, SIZE, SIZE, 3), "float32")))
    assert out.shape == (1, SIZE, SIZE, 3) and np.isfinite(out).all()


def test_an_unknown_architecture_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown HRNet model 'hrnet-w99'.*hrnet-w18-small"):
        HRNetBackbone("hrnet-w99")


def test_hrnet_keras_imports_nothing_of_keras_hub():
    code = (
        "import sys, hrnet_keras, hrnet_keras.model, hrnet_keras.features; "
        "hrnet_keras.create_model('hrnet-w18-small', input_shape=(64, 64, 3)); "
        "sys.exit('keras_hub' in sys.modules)"
    )
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
