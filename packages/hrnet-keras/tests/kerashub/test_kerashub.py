"""hrnet_keras.kerashub: KerasHub's backbone, classifier and preprocessor for HRNet.

W18-small at 64 px with seeded random weights, saved as the `.weights.h5` hrnet_keras
writes (what `convert` writes for a row).
"""

import ast
import os
import pathlib
import subprocess
import sys

import keras
import keras_hub  # pants: no-infer-dep (conftest.py)
import numpy as np
import pytest
import skimage.data
import tensorflow as tf
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


def test_a_backbone_alone_takes_the_weights_of_a_classifier(converted, classifier, pixels):
    backbone = HRNetBackbone.from_row(ARCH, weights=converted[1])
    np.testing.assert_array_equal(numpy(backbone(pixels)), numpy(classifier.backbone(pixels)))


def test_pyramid_outputs_are_the_stem_and_the_branches(classifier, pixels):
    backbone = classifier.backbone
    pyramid = keras.Model(backbone.input, backbone.pyramid_outputs)(pixels)
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
    with pytest.raises(ValueError, match="hrnet_w18_other"):
        keras_hub.models.Backbone.from_preset("hf://someone/hrnet_w18_other")


@pytest.mark.parametrize("row", ["hrnet-w18", "hrnet_w18_small.gluon_in1k"])
@pytest.mark.parametrize("where", ["eager", "tf.data"])
def test_image_converter_is_the_rows_pipeline(row, where):
    """Against hrnet_keras' `load_image` + `preprocess_input` (Pillow) on scikit-image's
    photos, called eagerly and in a tf.data pipeline (where KerasHub's `predict` and `fit`
    run it), in levels of 0-255: within one level (rounding), but for bicubic's overshoot,
    which Pillow clips between its two passes (measured: up to 0.6% of the values, 15
    levels at most, in tf.data)."""
    converter = HRNetImageConverter.from_row(row)
    std = np.asarray(hrnet_keras.data_config(row)["std"]) * 255
    for image in (skimage.data.chelsea(), skimage.data.rocket(), skimage.data.astronaut()):
        if where == "eager":
            got = numpy(converter(image))
        else:
            got = next(iter(tf.data.Dataset.from_tensors(image).map(converter))).numpy()
        want = hrnet_keras.preprocess_input(hrnet_keras.load_image(image, model=row), model=row)
        levels = np.abs(got - want) * std
        assert got.shape == want.shape == (224, 224, 3)
        assert levels.mean() <= 0.35 and np.quantile(levels, 0.99) <= 1.0 + 1e-3
        beyond = (levels > 1.0 + 1e-3).mean()
        assert beyond == 0 if converter.interpolation == "bilinear" else beyond <= 0.01


def test_predict_takes_raw_photos(classifier):
    """`predict` on uint8 photos of any size: the preprocessor, then the model (the converter
    runs in tf.data there, its resize TensorFlow's: logits within 2e-3 of the largest)."""
    photos = np.stack([skimage.data.chelsea(), skimage.data.chelsea()[::-1]])
    converter = classifier.preprocessor.image_converter
    want = numpy(classifier(np.stack([numpy(converter(photo)) for photo in photos])))
    got = classifier.predict(photos, verbose=0)
    assert np.abs(got - want).max() <= 2e-3 * np.abs(want).max()


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


def _imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def test_hrnet_keras_imports_nothing_of_keras_hub():
    """Outside `kerashub/`, no module of hrnet_keras imports keras_hub (or `kerashub`); and a
    process that imports the model modules (Keras' numpy backend) has no keras_hub loaded."""
    package = pathlib.Path(hrnet_keras.__file__).parent
    for path in package.rglob("*.py"):
        if "kerashub" in path.relative_to(package).parts:
            continue
        for module in _imported_modules(path):
            assert not module.startswith(("keras_hub", "hrnet_keras.kerashub")), (path, module)
    code = (
        "import sys, hrnet_keras, hrnet_keras.model, hrnet_keras.features; "
        "sys.exit('keras_hub' in sys.modules)"
    )
    env = {**os.environ, "KERAS_BACKEND": "numpy"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
