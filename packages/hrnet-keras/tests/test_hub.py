"""Checkpoints by hub name, offline, from a Hugging Face cache laid out by the test."""

import hashlib
import json
import os

import numpy as np
import pytest
import reference_model
from hub_cache import cache_repo

from hrnet_keras import convert, create_model
from hrnet_keras.checkpoints.conversion import convert_checkpoint
from hrnet_keras.checkpoints import file_sha256
from hrnet_keras.checkpoints.checksums import ChecksumError, recorded_hub_source, recorded_source
from hrnet_keras.checkpoints.hub import HubError, parse_handle, published_sha256

COMMIT = "0123456789abcdef0123456789abcdef01234567"
ROW = "hrnet_w18_small.gluon_in1k"


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
    cache_repo(hub, f"timm/{ROW}", files, COMMIT)
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
    # the repository and commit it came from, and the cache's own sha256 of that file
    assert recorded_hub_source(converted) == (f"timm/{ROW}", COMMIT)
    assert published_sha256(f"hf://timm/{ROW}") == file_sha256(timm_small[1])


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


def test_a_file_outside_the_hub_cache_records_no_repository(hub, timm_small, tmp_path):
    out = tmp_path / "out"
    convert_checkpoint(timm_small[1], ROW, out)
    assert recorded_hub_source(out / f"{ROW}.weights.h5") == (None, None)


@pytest.mark.parametrize(
    "handle, revision",
    [
        (f"hf://timm/{ROW}", None),
        (f"hf://timm/{ROW}@refs/pr/1", "refs/pr/1"),
        (f"hf://timm/{ROW}@v1.0+local", "v1.0+local"),
        (f"hf://timm/{ROW}@{COMMIT}", COMMIT),
    ],
)
def test_revisions_may_hold_slashes(handle, revision):
    assert parse_handle(handle) == (f"timm/{ROW}", revision)


@pytest.mark.parametrize(
    "handle, message",
    [
        (f"hf://timm/{ROW}@../../../outside", "no '.' or '..'"),
        (f"hf://timm/{ROW}@refs/../../x", "no '.' or '..'"),
        (f"hf://timm/{ROW}@/etc/passwd", "no leading or trailing '/'"),
        (f"hf://timm/{ROW}@main/", "no leading or trailing '/'"),
        (f"hf://timm/{ROW}@refs//pr", "not a branch, tag or commit name"),
        (f"hf://timm/{ROW}@./main", "no '.' or '..'"),
        (f"hf://timm/{ROW}@", "not a branch, tag or commit name"),
        ("hf://timm/..", "expected hf://OWNER/NAME"),
        ("hf://../timm", "expected hf://OWNER/NAME"),
        ("hf://timm/a--b", "expected hf://OWNER/NAME"),
        ("hf://timm/.hidden", "expected hf://OWNER/NAME"),
        ("hf://timm/x/y", "expected hf://OWNER/NAME"),
        ("hf:///timm/x", "expected hf://OWNER/NAME"),
    ],
)
def test_names_that_are_not_names_are_refused_before_any_file_is_read(
    hub, tmp_path, handle, message
):
    # what `@../../../outside` would read: a revision file outside the cache naming a
    # commit that the cache holds
    (tmp_path / "outside").write_text(COMMIT)
    with pytest.raises(HubError, match=message) as err:
        create_model("hrnet-w18-small", weights=handle)
    assert "\n" not in str(err.value)


def _set_ref(hub, make):
    ref = hub / f"models--timm--{ROW}" / "refs" / "main"
    ref.unlink()
    make(ref)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda ref: ref.write_text("../../../outside"), "names no commit"),
        (lambda ref: ref.mkdir(), "is not a file inside"),
        (lambda ref: os.symlink(ref.parents[4] / "outside", ref), "is not a file inside"),
    ],
    ids=["not-a-commit", "a-folder", "a-link-outside"],
)
def test_a_cached_ref_must_lie_inside_the_cache_and_name_a_commit(hub, tmp_path, make, message):
    (tmp_path / "outside").write_text(COMMIT)
    _set_ref(hub, make)
    with pytest.raises(HubError, match=message) as err:
        create_model("hrnet-w18-small", weights=f"hf://timm/{ROW}")
    assert "\n" not in str(err.value)
    assert published_sha256(f"hf://timm/{ROW}") is None  # and never counts as published


def test_a_snapshot_file_outside_the_cache_is_refused(hub, timm_small, tmp_path):
    outside = tmp_path / hashlib.sha256(timm_small[1].read_bytes()).hexdigest()
    outside.write_bytes(timm_small[1].read_bytes())
    link = hub / f"models--timm--{ROW}" / "snapshots" / COMMIT / "model.safetensors"
    link.unlink()
    os.symlink(outside, link)
    with pytest.raises(HubError, match="outside the cache folder"):
        create_model("hrnet-w18-small", weights=f"hf://timm/{ROW}")
    assert published_sha256(f"hf://timm/{ROW}") is None


def test_published_is_the_file_main_names(hub, timm_small):
    """Another commit of the repository with other bytes: `main` now names it."""
    other = b"other bytes"
    cache_repo(hub, f"timm/{ROW}", {"model.safetensors": other}, commit="f" * 40)
    assert published_sha256(f"hf://timm/{ROW}") == hashlib.sha256(other).hexdigest()
    assert published_sha256(f"hf://timm/{ROW}@{COMMIT}") == file_sha256(timm_small[1])
    assert published_sha256("hf://timm/hrnet_w18.ms_aug_in1k") is None  # not cached
