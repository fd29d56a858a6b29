import numpy as np
import pytest
from PIL import Image

from hrnet_keras import decode_predictions, load_image, preprocess_input
from hrnet_keras.preprocessing import center_crop, imagenet_classes


def _write(path, w, h, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def test_load_image_resizes_short_edge_and_crops_center(tmp_path):
    for w, h in [(500, 375), (333, 500), (256, 256), (224, 300)]:
        img = load_image(_write(tmp_path / f"{w}x{h}.jpg", w, h))
        assert img.shape == (224, 224, 3) and img.dtype == np.uint8


def test_center_crop_rounds_like_mmpretrain():
    # (H - 224) / 2 = 0.5 and 1.5: Python's round gives 0 and 2
    a = np.arange(225 * 227).reshape(225, 227, 1)
    assert center_crop(a)[0, 0, 0] == a[0, 2, 0] == 2
    with pytest.raises(ValueError, match="smaller than the 224x224 crop"):
        center_crop(np.zeros((200, 300, 3)))


def test_grayscale_and_rgba_become_rgb(tmp_path):
    Image.new("L", (300, 260), 128).save(tmp_path / "g.png")
    Image.new("RGBA", (300, 260), (1, 2, 3, 4)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "g.png").shape == (224, 224, 3)
    assert tuple(load_image(tmp_path / "a.png")[0, 0]) == (1, 2, 3)


def test_corrupt_image_fails_naming_the_file(tmp_path):
    bad = tmp_path / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    with pytest.raises(ValueError, match="broken.JPEG"):
        load_image(bad)


def test_preprocess_input_normalises_both_layouts():
    x = np.full((2, 4, 4, 3), 255, dtype=np.uint8)
    y = preprocess_input(x)
    np.testing.assert_allclose(
        y[0, 0, 0],
        (255 - np.array([123.675, 116.28, 103.53])) / np.array([58.395, 57.12, 57.375]),
        rtol=1e-6,
    )
    z = preprocess_input(np.transpose(x, (0, 3, 1, 2)), data_format="channels_first")
    np.testing.assert_allclose(np.transpose(z, (0, 2, 3, 1)), y)


def test_decode_predictions_names_imagenet_classes():
    classes = imagenet_classes()
    assert len(classes) == 1000 and classes[0] == ("n01440764", "tench")
    assert [c[0] for c in classes] == sorted(c[0] for c in classes)
    preds = np.zeros((2, 1000), dtype="float32")
    preds[0, 999], preds[0, 1] = 0.9, 0.1
    preds[1, 207] = 1.0
    top = decode_predictions(preds, top=2)
    assert top[0][0] == ("n15075141", "toilet tissue", pytest.approx(0.9))
    assert top[0][1][:2] == ("n01443537", "goldfish")
    assert top[1][0][:2] == ("n02099601", "golden retriever")
    with pytest.raises(ValueError, match=r"\(batch, 1000\)"):
        decode_predictions(np.zeros((2, 10)))


SAMPLE_PHOTOS = [
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "chelsea.png",
    "coffee.png",
    "astronaut.png",
    "camera.png",
]


def _sample_photos(tmp_path):
    import os

    import skimage.data

    root = os.path.dirname(skimage.data.__file__)
    paths = [os.path.join(root, name) for name in SAMPLE_PHOTOS]
    # and a JPEG of a size whose crop offsets round (ImageNet's 500x375 is common)
    Image.open(paths[3]).convert("RGB").resize((500, 375)).save(tmp_path / "cat.JPEG", quality=92)
    return paths + [str(tmp_path / "cat.JPEG")]


def test_pipeline_equals_mmpretrain_on_real_photos(tmp_path):
    import reference_model

    paths = _sample_photos(tmp_path)
    ours = preprocess_input(np.stack([load_image(p) for p in paths]), data_format="channels_last")
    theirs = reference_model.reference_pipeline(paths)
    assert ours.shape == theirs.shape == (len(paths), 224, 224, 3)
    assert np.abs(ours - theirs).max() <= 1e-4
