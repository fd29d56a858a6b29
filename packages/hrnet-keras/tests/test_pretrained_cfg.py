"""Each row's test pipeline travels with the model: `pretrained_cfg`, `data_config`,
`load_image(..., model=)` and `preprocess_input(..., model=)` against timm's own
`create_transform` (every timm row and timm name) and mmpretrain's pipeline from each
table row's own config file, on scikit-image's photos."""

import io
import os

import keras
import numpy as np
import pytest
import reference_model
from PIL import Image

import hrnet_keras
from hrnet_keras import create_model, data_config, load_image, preprocess_input
from hrnet_keras.configs import SAME_WEIGHTS, list_models

PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "camera.png"]
TIMM_NAMES = list_models("timm") + list(SAME_WEIGHTS)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import skimage.data

    root = os.path.dirname(skimage.data.__file__)
    paths = [os.path.join(root, name) for name in PHOTOS]
    extra = tmp_path_factory.mktemp("photos") / "cat.JPEG"  # a 500x375 JPEG: crops round
    Image.open(paths[0]).convert("RGB").resize((500, 375)).save(extra, quality=92)
    return paths + [str(extra)]


def readme_pixels(paths, name):
    """The README's lines: load_image + preprocess_input with the row's pipeline."""
    return preprocess_input(np.stack([load_image(p, model=name) for p in paths]), model=name)


@pytest.mark.parametrize("name", TIMM_NAMES)
def test_timm_rows_give_timms_create_transform_pixels(name, photos):
    import timm

    timm_model = timm.create_model(name, pretrained=False)  # its pretrained_cfg, no download
    # at timm's test size, where its published figures are (SSLD: 288/288, trained at 224)
    want = timm.data.resolve_data_config({}, model=timm_model, use_test_size=True)
    assert data_config(name) == {k: want[k] for k in data_config(name)}
    transform = timm.data.create_transform(**want)
    theirs = np.stack([transform(Image.open(p).convert("RGB")).permute(1, 2, 0) for p in photos])
    ours = readme_pixels(photos, name)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-4


def _mmpretrain_pipeline(row, paths):
    """The test pipeline and data preprocessor in row `row`'s own mmpretrain config."""
    import torch
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmpretrain.utils import register_all_modules

    from hrnet_keras.configs import get_preset

    register_all_modules()
    cfg = Config.fromfile(reference_model._config_path(get_preset(row).mmpretrain_config))
    pipeline = Compose(cfg.test_pipeline)
    mean = torch.tensor(cfg.data_preprocessor["mean"]).view(3, 1, 1)
    std = torch.tensor(cfg.data_preprocessor["std"]).view(3, 1, 1)
    assert cfg.data_preprocessor["to_rgb"]
    out = []
    for path in paths:
        chw = pipeline(dict(img_path=str(path)))["inputs"].float()[[2, 1, 0]]
        out.append(((chw - mean) / std).permute(1, 2, 0).numpy())
    return np.stack(out)


@pytest.mark.parametrize("row", list_models("mmcls"))
def test_table_rows_give_mmpretrains_pixels(row, photos):
    theirs = _mmpretrain_pipeline(row, photos)
    ours = readme_pixels(photos, row)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-4


@pytest.mark.parametrize(
    "name",
    [
        "hrnet_w18_small.gluon_in1k",
        "hrnet_w18_small_v2.ms_in1k",
        pytest.param("hrnet_w18.ms_aug_in1k", marks=pytest.mark.slow),
    ],
)
def test_timm_rows_give_timms_top5_with_the_same_weights(name, photos, tmp_path):
    """timm's model (random weights, BatchNorm statistics made to tell the photos apart) on
    timm's pixels; the converted Keras model on the README's pixels: the same top-5."""
    import timm

    timm_model = timm.create_model(name, pretrained=False)
    reference_model.randomize(timm_model, seed=5)
    pixels = reference_model.timm_pipeline(timm_model, photos)
    reference_model.make_discriminative(timm_model.eval(), pixels)
    path = reference_model.save_safetensors(timm_model, tmp_path / "w.safetensors")
    want = reference_model.timm_forward(timm_model, pixels)
    model = create_model(name, weights=path, classifier_activation=None)
    got = keras.ops.convert_to_numpy(model(readme_pixels(photos, model), training=False))
    top5 = lambda x: np.argsort(-x, axis=1, kind="stable")[:, :5]  # noqa: E731
    assert np.array_equal(top5(got), top5(want))


def test_the_model_carries_its_pipeline_through_save_and_load(tmp_path):
    model = create_model("hrnet_w18_small.gluon_in1k", input_shape=(64, 64, 3))
    assert data_config(model) == data_config("hrnet_w18_small.gluon_in1k")
    assert model.pretrained_cfg["name"] == "hrnet_w18_small.gluon_in1k"
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.pretrained_cfg == model.pretrained_cfg
    assert data_config(loaded)["interpolation"] == "bicubic"
    pyramid = create_model("hrnet_w18.ms_aug_in1k", features_only=True, input_shape=(64, 64, 3))
    pyramid.save(tmp_path / "p.keras")
    assert data_config(keras.models.load_model(tmp_path / "p.keras"))["crop_pct"] == 0.95


def test_other_rows_weights_bring_their_pipeline(tmp_path):
    assert data_config("hrnet-w18-small") == data_config("hrnet_w18_small.gluon_in1k")
    plain = keras.Model(*(lambda x: (x, keras.layers.Dense(2)(x)))(keras.Input((3,))))
    with pytest.raises(ValueError, match="carries no pretrained_cfg.*data_config\\('hrnet-w18'\\)"):
        data_config(plain)
    with pytest.raises(ValueError, match="Unknown HRNet model 'nope'"):
        load_image(np.zeros((8, 8, 3), "uint8"), model="nope")


def test_load_image_takes_paths_bytes_files_arrays_and_pil_images(photos):
    path = photos[0]
    want = load_image(path, model="hrnet_w18_small.gluon_in1k")
    data = open(path, "rb").read()
    decoded = np.asarray(Image.open(path).convert("RGB"))
    with Image.open(path) as opened:
        from_opened = load_image(opened, model="hrnet_w18_small.gluon_in1k")
    for image in (data, io.BytesIO(data), decoded, Image.fromarray(decoded)):
        assert np.array_equal(load_image(image, model="hrnet_w18_small.gluon_in1k"), want)
    assert np.array_equal(from_opened, want)
    gray = np.asarray(Image.open(path).convert("L"))
    assert np.array_equal(load_image(gray), load_image(np.repeat(gray[..., None], 3, axis=2)))
    assert not np.array_equal(load_image(path), want)  # the table's bilinear differs
    assert np.array_equal(load_image(path, interpolation="bicubic"), want)


def test_errors_name_the_image_and_never_print_its_pixels():
    pixels = np.full((300, 300, 3), 143.5, dtype="float32")
    with pytest.raises(ValueError) as info:
        load_image(pixels)
    message = str(info.value)
    assert "NumPy array of shape (300, 300, 3), float32" in message and "143" not in message
    assert "\n" not in message
    with pytest.raises(ValueError, match=r"^Cannot decode image <12 bytes of image data>"):
        load_image(b"not an image")
    with pytest.raises(ValueError, match=r"^Refusing image <NumPy array of shape \(1, 8000, 3\)"):
        load_image(np.zeros((1, 8000, 3), "uint8"))
    with pytest.raises(ValueError, match=r"Pillow mode F has no RGB conversion"):
        load_image(Image.new("F", (300, 300)))
    with pytest.raises(ValueError, match="takes 0-255 RGB pixels .* got str"):
        preprocess_input("cat.jpg")
    with pytest.raises(ValueError, match=r"3 channels \(channels_last\), got .* \(2, 4, 4, 5\)"):
        preprocess_input(np.zeros((2, 4, 4, 5)))


def test_data_config_is_public_and_lazy():
    assert hrnet_keras.data_config is data_config
    assert "data_config" in hrnet_keras.__all__
