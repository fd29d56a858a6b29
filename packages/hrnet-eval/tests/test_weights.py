"""`--weights-dir`: published checkpoints checked, converted weights' provenance in the spec."""

import dataclasses
import os
import subprocess
import sys

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
    from hrnet_keras import create_model
    from hrnet_keras.checkpoints.conversion import convert_checkpoint
    from hrnet_keras.checkpoints import file_sha256

    convert_checkpoint(w18_files["mmcls"], "hrnet-w18", tmp_path)
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


def test_checked_file_is_not_read_again_and_other_bytes_are(tmp_path, monkeypatch):
    """With a program cache, a weights file that passed its check is trusted by its sha256
    (no tensor read on the next run); the same file name with other bytes (a NaN written
    in place) is read and refused."""
    import h5py
    import numpy as np
    from hrnet_keras import create_model

    from hrnet_eval import weights

    path = tmp_path / "hrnet-w18.weights.h5"
    create_model("hrnet-w18").save_weights(path)
    cache = tmp_path / "cache"
    first = resolve("hrnet-w18", tmp_path, allow_download=False, compile_cache=cache)
    (entry,) = (cache / "checked").iterdir()
    assert cache.stat().st_mode & 0o777 == 0o700
    (entry / weights.CHECKED_FILE).write_text("damaged")
    notes = []
    assert (
        resolve(
            "hrnet-w18",
            tmp_path,
            allow_download=False,
            compile_cache=cache,
            out=lambda line, **_: notes.append(line),
        )
        == first
    )
    assert len(notes) == 1 and f"cache entry {entry} is damaged" in notes[0], notes

    (tmp_path / "ssld").mkdir()
    (tmp_path / "ssld" / "hrnet-w18-ssld.weights.h5").write_bytes(path.read_bytes())

    def read_tensors(path):
        raise AssertionError(f"{path} read again")

    with monkeypatch.context() as patch:
        patch.setattr(weights, "read_tensors", read_tensors)
        assert resolve("hrnet-w18", tmp_path, allow_download=False, compile_cache=cache) == first
        with pytest.raises(AssertionError, match="read again"):  # same bytes, another row
            resolve("hrnet-w18-ssld", tmp_path / "ssld", allow_download=False, compile_cache=cache)
    # and the job's process imports neither Keras nor TensorFlow to do it
    code = (
        "import sys; from hrnet_eval.weights import resolve; "
        f"resolve('hrnet-w18', {str(tmp_path)!r}, allow_download=False, compile_cache={str(cache)!r}); "
        "print(sorted({'keras', 'tensorflow', 'torch'} & set(sys.modules)))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr
    with h5py.File(path, "r+") as f:
        datasets = []
        f.visititems(lambda k, v: datasets.append(k) if isinstance(v, h5py.Dataset) else None)
        f[datasets[0]][(0,) * f[datasets[0]].ndim] = np.nan
    with pytest.raises(WeightsError, match=f"{path} holds NaN or inf in tensor {datasets[0]}"):
        resolve("hrnet-w18", tmp_path, allow_download=False, compile_cache=cache)
