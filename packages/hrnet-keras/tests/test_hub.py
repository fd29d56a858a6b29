"""Checkpoints by hub name, offline, from a Hugging Face cache laid out by the test."""

import hashlib
import json
import os

import numpy as np
import pytest
import reference_model

from hrnet_keras import convert, create_model
from hrnet_keras.checkpoints import file_sha256
from hrnet_keras.checkpoints.checksums import ChecksumError, recorded_source
from hrnet_keras.checkpoints.hub import HubError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROW = "hrnet_w18_small.gluon_in1k"


def _cache_repo(hub, repo_id, files, commit=COMMIT, ref="main"):
    """Lay out `repo_id` as huggingface_hub caches it: blobs named by sha256, a snapshot
    of symlinks per commit, refs/<ref> naming the commit."""
    root = hub / f"models--{repo_id.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        os.symlink(os.path.relpath(blob, snapshot), snapshot / name)
    return root


@pytest.fixture(scope="module")
def timm_small(tmp_path_factory):
    path = tmp_path_factory.mktemp("timm") / "model.safetensors"
    model, _ = reference_model.timm_checkpoint("hrnet_w18_small", path, seed=5)
    return model, path


@pytest.fixture
def hub(tmp_path, monkeypatch, timm_small):
    hub = tmp_path / "hf" / "hub"
    config = json.dumps({"architecture": "hrnet_w18_small", "num_classes": 1000}).encode()
    files = {"config.json": config, "model.safetensors": timm_small[1].read_bytes()}
    _cache_repo(hub, f"timm/{ROW}", files)
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HRNET_KERAS_CACHE", str(tmp_path / "keras-cache"))
    return hub


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(2).standard_normal((1, 64, 64, 3)).astype("float32")


def test_hub_name_and_row_load_offline_and_equal_timm(hub, timm_small, pixels, tmp_path):
    want = reference_model.timm_forward(timm_small[0], pixels)
    by_handle = create_model(
        "hrnet-w18-small", weights=f"hf://timm/{ROW}@{COMMIT}", classifier_activation=None
    )
    got = np.asarray(by_handle.predict(pixels, verbose=0))
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    # the row's own weights come from the same hub repository, converted once into the cache
    by_row = create_model(ROW, weights="imagenet", classifier_activation=None)
    np.testing.assert_array_equal(np.asarray(by_row.predict(pixels, verbose=0)), got)
    converted = tmp_path / "keras-cache" / f"{ROW}.weights.h5"
    assert recorded_source(converted) == (
        "model.safetensors",
        file_sha256(timm_small[1]),
    )


def test_convert_cli_takes_a_hub_name_and_infers_the_architecture(hub, tmp_path, capsys):
    out = tmp_path / "out"
    assert convert.main([f"hf://timm/{ROW}", "--out", str(out), "--no-progress"]) == 0
    assert (out / f"{ROW}.weights.h5").is_file()
    assert convert.main([f"hf://timm/{ROW}", "--model", "hrnet-w18", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "holds hrnet_w18_small (config.json), which is hrnet-w18-small" in err
    assert err.count("\n") == 1


def test_wrong_architecture_is_refused(hub):
    with pytest.raises(HubError, match="which is hrnet-w18-small, but the model is hrnet-w18"):
        create_model("hrnet-w18", weights=f"hf://timm/{ROW}")


def test_damaged_blob_is_refused(hub, timm_small):
    data = bytearray(timm_small[1].read_bytes())
    root = hub / f"models--timm--{ROW}"
    blob = os.path.realpath(root / "snapshots" / COMMIT / "model.safetensors")
    data[-8:] = bytes(8)
    os.chmod(blob, 0o644)
    with open(blob, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(ChecksumError, match="is not the cache blob's name"):
        create_model("hrnet-w18-small", weights=f"hf://timm/{ROW}")


@pytest.mark.parametrize(
    "handle, message",
    [
        ("hf://timm/hrnet_w18.ms_aug_in1k", "not in the cache and HF_HUB_OFFLINE is set"),
        (f"hf://timm/{ROW}@v2", r"timm/hrnet_w18_small\.gluon_in1k@v2/config\.json"),
    ],
)
def test_uncached_offline_names_what_is_missing(hub, handle, message):
    arch = "hrnet-w18" if "ms_aug" in handle else "hrnet-w18-small"
    with pytest.raises(HubError, match=message) as err:
        create_model(arch, weights=handle)
    assert "\n" not in str(err.value)


def test_malformed_handle_is_refused_before_building():
    with pytest.raises(HubError, match="expected hf://OWNER/NAME"):
        create_model("hrnet-w18", weights="hf://timm")
