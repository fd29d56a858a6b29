"""A timm row converted from the Hugging Face cache counts as published exactly when its
source has the bytes of the file the cache's `main` names for the row's repository."""

import json

import pytest
import reference_model
from hub_cache import cache_repo

from hrnet_eval.weights import resolve

ROW = "hrnet_w18_small.gluon_in1k"
COMMIT = "0123456789abcdef" * 2 + "01234567"


@pytest.fixture
def hub(tmp_path, monkeypatch):
    checkpoint = tmp_path / "model.safetensors"
    reference_model.timm_checkpoint("hrnet_w18_small", checkpoint, seed=5)
    config = json.dumps({"architecture": "hrnet_w18_small", "num_classes": 1000}).encode()
    files = {"config.json": config, "model.safetensors": checkpoint.read_bytes()}
    cache_repo(tmp_path / "hub", f"timm/{ROW}", files, COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hub", checkpoint


def test_a_row_converted_from_the_hub_cache_is_published_while_main_names_its_file(hub, tmp_path):
    from hrnet_keras.checkpoints import file_sha256
    from hrnet_keras.checkpoints.checksums import recorded_hub_source

    spec = resolve(ROW, tmp_path / "weights", allow_download=False)
    assert spec.published is True and spec.source_sha256 == file_sha256(hub[1])
    assert recorded_hub_source(spec.weights) == (f"timm/{ROW}", COMMIT)
    # a new commit on main with other bytes: the converted file is no longer the row's
    cache_repo(hub[0], f"timm/{ROW}", {"model.safetensors": b"other"}, "f" * 40)
    assert resolve(ROW, tmp_path / "weights", allow_download=False).published is False


def test_other_bytes_for_the_row_are_unpublished(hub, tmp_path):
    from hrnet_keras.checkpoints import conversion

    other = tmp_path / "other.safetensors"
    reference_model.timm_checkpoint("hrnet_w18_small", other, seed=6)
    conversion.convert_checkpoint(other, ROW, tmp_path / "weights")
    assert resolve(ROW, tmp_path / "weights", allow_download=False).published is False
