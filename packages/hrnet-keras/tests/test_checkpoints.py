import dataclasses
import os
import pickle

import numpy as np
import pytest
import reference_model
import torch

from hrnet_keras import configs, convert, create_model
from hrnet_keras.checkpoints import CheckpointError, file_sha256, load_checkpoint_into
from hrnet_keras.checkpoints.checksums import recorded_source
from hrnet_keras.checkpoints.keymap import assign_state
from hrnet_keras.checkpoints.layouts import to_mmcls
from hrnet_keras.configs import get_preset
from hrnet_keras.checkpoints.conversion import convert_checkpoint, ensure_converted
from hrnet_keras.loading import WeightsFileError

WIDTHS = [
    "hrnet-w18",
    "hrnet-w30",
    "hrnet-w32",
    "hrnet-w40",
    pytest.param("hrnet-w44", marks=pytest.mark.slow),
    pytest.param("hrnet-w48", marks=pytest.mark.slow),
    pytest.param("hrnet-w64", marks=pytest.mark.slow),
]


def _logits(model, images):
    return np.asarray(model.predict(images, verbose=0))


@pytest.fixture(scope="module")
def w18_logits_model():
    return create_model("hrnet-w18", classifier_activation=None)


@pytest.mark.parametrize("layout", ["mmcls", "official"])
def test_converted_logits_equal_the_reference(
    layout, w18_files, w18_logits_model, images, reference_w18_logits
):
    assert load_checkpoint_into(w18_logits_model, w18_files[layout], "hrnet-w18").layout == layout
    diff = np.abs(_logits(w18_logits_model, images) - reference_w18_logits).max()
    assert diff <= 1e-4, diff


def test_bare_state_dict_and_safetensors_give_the_same_weights(reference_w18, tmp_path, w18_files):
    from safetensors.numpy import save_file

    bare = tmp_path / "bare.pt"
    torch.save(reference_w18.state_dict(), bare)
    st = tmp_path / "w18.safetensors"
    save_file({k: v.numpy() for k, v in reference_w18.state_dict().items()}, str(st))
    models = []
    for src in (w18_files["mmcls"], bare, st):
        model = create_model("hrnet-w18", weights=src)
        models.append(model.get_weights())
    for other in models[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(models[0], other))


@pytest.mark.parametrize("name", WIDTHS)
def test_every_width_converts_key_for_key(name):
    """The mmpretrain model's full state dict maps onto the Keras model, strictly."""
    state = {k: v.numpy() for k, v in reference_model.build_reference(name).state_dict().items()}
    model = create_model(name)
    assigned = assign_state(model, state, expected_width=int(name.split("w")[-1]))
    assert assigned == len(model.weights)
    # trainable tensors = the table's Params, every one assigned
    assert (
        sum(
            v.size
            for k, v in state.items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )
        == get_preset(name).params
    )


def _state(reference_w18):
    return {k: v.numpy().copy() for k, v in reference_w18.state_dict().items()}


def test_missing_tensor_is_named(reference_w18):
    state = _state(reference_w18)
    del state["backbone.stage3.2.fuse_layers.2.0.1.0.weight"]
    with pytest.raises(CheckpointError, match=r"stage3\.2\.fuse_layers\.2\.0\.1\.0\.weight"):
        assign_state(create_model("hrnet-w18"), state)


def test_unexpected_tensor_is_named(reference_w18):
    state = _state(reference_w18)
    state["backbone.extra.weight"] = np.zeros(3, "float32")
    with pytest.raises(CheckpointError, match=r"backbone\.extra\.weight"):
        assign_state(create_model("hrnet-w18"), state)


def test_shape_mismatch_names_key_and_both_shapes(reference_w18):
    state = _state(reference_w18)
    state["head.fc.weight"] = np.zeros((10, 2048), "float32")
    with pytest.raises(
        CheckpointError, match=r"head\.fc\.weight has shape \(10, 2048\).*\(2048, 1000\)"
    ):
        assign_state(create_model("hrnet-w18"), state)


def test_other_width_says_which(tmp_path):
    ckpt = reference_model.save_mmcls(
        reference_model.build_reference("hrnet-w30"), tmp_path / "w30.pth"
    )
    with pytest.raises(CheckpointError, match="HRNet-W30 checkpoint.*--model hrnet-w30"):
        create_model("hrnet-w18", weights=ckpt)


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    payload = _Payload()
    payload.marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": {"x": payload}}, f)
    with pytest.raises(CheckpointError, match="Refusing to load .*evil.pth"):
        create_model("hrnet-w18", weights=evil)
    assert not payload.marker.exists()


def test_unknown_layout_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="Unrecognised checkpoint layout"):
        create_model("hrnet-w18", weights=path)


def test_official_head_biases_fold_into_batchnorm(reference_w18, w18_files):
    from hrnet_keras.checkpoints.reader import read_state_dict

    layout, state = to_mmcls(read_state_dict(w18_files["official"]))
    assert layout == "official"
    assert not any(k.endswith(".conv.bias") for k in state)
    want = reference_w18.state_dict()["neck.0.final_layer.bn.running_mean"].numpy()
    np.testing.assert_allclose(state["neck.0.final_layer.bn.running_mean"], want, atol=1e-6)


def _publish(monkeypatch, name, path):
    """Make row `name`'s published file name carry the sha256 prefix of `path` (a test file)."""
    preset = get_preset(name)
    url = preset.url.replace(preset.sha256_prefix, file_sha256(path)[:8])
    monkeypatch.setitem(configs.PRESETS, name, dataclasses.replace(preset, url=url))
    return get_preset(name)


def test_row_name_converts_from_cache_on_first_use(
    tmp_path, monkeypatch, w18_files, images, reference_w18_logits
):
    monkeypatch.setenv("HRNET_KERAS_CACHE", str(tmp_path))
    preset = _publish(monkeypatch, "hrnet-w18-ssld", w18_files["mmcls"])
    (tmp_path / preset.filename).write_bytes(w18_files["mmcls"].read_bytes())
    model = create_model("hrnet-w18", weights="hrnet-w18-ssld", classifier_activation=None)
    converted = tmp_path / "hrnet-w18-ssld.weights.h5"
    assert converted.is_file()
    assert recorded_source(converted) == (preset.filename, file_sha256(w18_files["mmcls"]))
    assert np.abs(_logits(model, images) - reference_w18_logits).max() <= 1e-4
    # headless models take the same converted file, and a .keras path works too
    feats = create_model("hrnet-w18", weights="hrnet-w18-ssld", include_top=False, pooling="avg")
    keras_file = convert_checkpoint(
        tmp_path / preset.filename, "hrnet-w18-ssld", tmp_path / "k", keras_model=True
    )[1]
    again = create_model("hrnet-w18", weights=keras_file)
    assert np.array_equal(feats.get_weights()[0], again.get_weights()[0])
    with pytest.raises(ValueError, match="are for hrnet-w48"):
        create_model("hrnet-w18", weights="hrnet-w48-ssld")


def _tamper(w18_files, folder, name="hrnet-w18"):
    """The W18 test checkpoint under row `name`'s published file name (so: the wrong sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / get_preset(name).filename
    path.write_bytes(w18_files["mmcls"].read_bytes())
    return path


def test_tampered_published_file_is_refused_wherever_it_comes_from(
    tmp_path, monkeypatch, w18_files, capsys
):
    preset = get_preset("hrnet-w18")
    actual = file_sha256(w18_files["mmcls"])[:8]
    message = f"sha256 {actual}... does not match the published {preset.sha256_prefix}"
    local = _tamper(w18_files, tmp_path / "local")
    with pytest.raises(CheckpointError, match=f"{local}: {message}"):
        create_model("hrnet-w18", weights=local)
    # python -m hrnet_keras.convert FILE
    out = tmp_path / "out"
    assert convert.main([str(local), "--model", "hrnet-w18", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {local}: {message}") and err.count("\n") == 1
    assert not out.exists() or list(out.iterdir()) == []
    # convert --download with the file already there; the cache's first use
    cache = _tamper(w18_files, tmp_path / "cache").parent
    assert convert.main(["--download", "hrnet-w18", "--out", str(cache), "--no-progress"]) == 1
    assert message in capsys.readouterr().err
    with pytest.raises(CheckpointError, match=message):
        ensure_converted("hrnet-w18", cache=cache, allow_download=False)
    assert sorted(p.name for p in cache.iterdir()) == [preset.filename]  # nothing converted
    # the same bytes under the user's own name are the user's file
    own = tmp_path / "mine.pth"
    own.write_bytes(local.read_bytes())
    assert convert.main([str(own), "--model", "hrnet-w18", "--out", str(out)]) == 0
    assert recorded_source(out / preset.keras_weights) == ("mine.pth", file_sha256(own))


def test_weights_converted_without_a_record_read_as_unverified(tmp_path):
    path = tmp_path / "plain.weights.h5"
    create_model("hrnet-w18").save_weights(path)
    assert recorded_source(path) == (None, None)


@pytest.fixture(scope="module")
def saved_w18(tmp_path_factory, w18_files):
    folder = tmp_path_factory.mktemp("saved")
    return convert_checkpoint(w18_files["mmcls"], "hrnet-w18", folder, keras_model=True)


def _damage(path, tmp_path, how):
    data = bytearray(path.read_bytes())
    damaged = tmp_path / f"{how}-{path.name}"
    if how == "truncated":
        data = data[: len(data) // 2]
    else:  # garbled: overwrite bytes inside the file (HDF5 superblock / zip member data)
        at = 0 if path.name.endswith(".h5") else len(data) // 2
        data[at : at + 64] = bytes(64)
    damaged.write_bytes(bytes(data))
    return damaged


@pytest.mark.parametrize("kind", [0, 1], ids=["weights.h5", "keras"])
@pytest.mark.parametrize("how", ["truncated", "garbled"])
@pytest.mark.parametrize("include_top", [True, False], ids=["top", "headless"])
def test_damaged_keras_files_are_named_with_what_to_do(saved_w18, tmp_path, kind, how, include_top):
    damaged = _damage(saved_w18[kind], tmp_path, how)
    with pytest.raises(WeightsFileError) as err:
        create_model("hrnet-w18", weights=damaged, include_top=include_top)
    text = str(err.value)
    assert text.startswith(f"{damaged} is not a readable Keras") and "\n" not in text
    assert "python -m hrnet_keras.convert" in text


def test_missing_weights_give_the_command_that_gets_them(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="python -m hrnet_keras.convert --download hrnet-w64"
    ):
        ensure_converted("hrnet-w64", cache=tmp_path, allow_download=False)
