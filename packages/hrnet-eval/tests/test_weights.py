"""`--weights-dir`: published checkpoints checked, converted weights' provenance in the spec."""

import dataclasses

import pytest

from hrnet_eval.weights import WeightsError, resolve


def _publish(monkeypatch, name, path):
    """Make row `name`'s published file name carry the sha256 prefix of `path` (a test file)."""
    from hrnet_keras import configs
    from hrnet_keras.checkpoints import file_sha256

    preset = configs.get_preset(name)
    url = preset.url.replace(preset.sha256_prefix, file_sha256(path)[:8])
    monkeypatch.setitem(configs.PRESETS, name, dataclasses.replace(preset, url=url))
    return configs.get_preset(name)


def test_published_checkpoint_in_weights_dir_converts_as_published(
    tmp_path, monkeypatch, w18_files
):
    from hrnet_keras.checkpoints import file_sha256

    preset = _publish(monkeypatch, "hrnet-w18", w18_files["mmcls"])
    (tmp_path / preset.filename).write_bytes(w18_files["mmcls"].read_bytes())
    spec = resolve("hrnet-w18", tmp_path, allow_download=False)
    assert spec.published is True
    assert spec.source_sha256 == file_sha256(w18_files["mmcls"])
    assert spec.weights == str(tmp_path / preset.keras_weights)


def test_tampered_published_checkpoint_is_refused(tmp_path, w18_files):
    from hrnet_keras.configs import get_preset

    preset = get_preset("hrnet-w18")
    (tmp_path / preset.filename).write_bytes(w18_files["mmcls"].read_bytes())
    with pytest.raises(WeightsError, match=f"does not match the published {preset.sha256_prefix}"):
        resolve("hrnet-w18", tmp_path, allow_download=False)
    assert not (tmp_path / preset.keras_weights).exists()


def test_users_own_conversion_and_unrecorded_weights_are_unpublished(tmp_path, w18_files):
    from hrnet_keras import convert, create_model
    from hrnet_keras.checkpoints import file_sha256

    convert.convert_checkpoint(w18_files["mmcls"], "hrnet-w18", tmp_path)
    spec = resolve("hrnet-w18", tmp_path, allow_download=False)
    assert spec.published is False and spec.source_sha256 == file_sha256(w18_files["mmcls"])
    old = tmp_path / "old"
    old.mkdir()
    create_model("hrnet-w18-ssld").save_weights(old / "hrnet-w18-ssld.weights.h5")
    spec = resolve("hrnet-w18-ssld", old, allow_download=False)
    assert spec.published is False and spec.source_sha256 is None


def test_truncated_weights_file_is_named(tmp_path):
    from hrnet_keras import create_model

    path = tmp_path / "hrnet-w18.weights.h5"
    create_model("hrnet-w18").save_weights(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(WeightsError, match=f"{path} is not a readable Keras weights file"):
        resolve("hrnet-w18", tmp_path, allow_download=False)
