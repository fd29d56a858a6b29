import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from hrnet_keras import decode_predictions, load_image, preprocess_input
from hrnet_keras.preprocessing import MAX_ASPECT_RATIO, center_crop, imagenet_classes


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


def png_claiming(path, width, height):
    """A 1x1 PNG whose header (IHDR, checksum valid) claims width x height: a bomb's header."""
    Image.new("RGB", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    limit = Image.MAX_IMAGE_PIXELS
    # Above twice the limit Pillow raises DecompressionBombError (not an OSError).
    bomb = png_claiming(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(ValueError, match=f"^Refusing image {bomb}: Image size .* exceeds limit"):
        load_image(bomb)
    # Between the limit and twice it Pillow only warns: refused too, from the header alone
    # (decoding this 1x1 file would fail otherwise).
    side = int((1.5 * limit) ** 0.5)
    warned = png_claiming(tmp_path / "warned.png", side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(
            ValueError,
            match=rf"^Refusing image {warned}: {side}x{side} is {side * side} pixels, above "
            rf"Pillow's limit of {limit} \(PIL.Image.MAX_IMAGE_PIXELS",
        ):
            load_image(warned)


def test_extreme_aspect_ratios_are_refused_before_resizing(tmp_path):
    """A 1x8000 JPEG would be resized to 256x2048000; 20:1 and less load as before."""
    assert MAX_ASPECT_RATIO == 20
    for w, h in [(1, 8000), (8000, 1), (10, 201)]:
        path = _write(tmp_path / f"{w}x{h}.jpg", w, h)
        with pytest.raises(
            ValueError, match=rf"^Refusing image {path}: {w}x{h} pixels exceed the aspect ratio"
        ):
            load_image(path)
    for w, h in [(10, 200), (200, 10)]:
        img = load_image(_write(tmp_path / f"{w}x{h}.jpg", w, h))
        assert img.shape == (224, 224, 3)


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
    # and one at the aspect ratio cap (20:1), which must go through the pipeline unchanged
    Image.open(paths[3]).convert("RGB").resize((12, 240)).save(tmp_path / "strip.png")
    return paths + [str(tmp_path / "cat.JPEG"), str(tmp_path / "strip.png")]


def test_pipeline_equals_mmpretrain_on_real_photos(tmp_path):
    import reference_model

    paths = _sample_photos(tmp_path)
    ours = preprocess_input(np.stack([load_image(p) for p in paths]), data_format="channels_last")
    theirs = reference_model.reference_pipeline(paths)
    assert ours.shape == theirs.shape == (len(paths), 224, 224, 3)
    assert np.abs(ours - theirs).max() <= 1e-4
