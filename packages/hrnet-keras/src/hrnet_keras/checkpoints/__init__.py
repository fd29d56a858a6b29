"""Published checkpoints -> Keras weights: fetch, check, read safely, map keys, assign.

This package never builds a model: it loads into the model it is given
(`hrnet_keras.convert` and `create_model` build theirs). Importing it does not import
Keras (only `load_checkpoint_into` does), so fetching and checksums stay light.
"""

import dataclasses
import os
from pathlib import Path

from hrnet_keras.checkpoints.checksums import ChecksumError, file_sha256, verify
from hrnet_keras.checkpoints.download import DownloadError, cache_dir, download
from hrnet_keras.checkpoints.hub import HubError, is_hub_handle
from hrnet_keras.checkpoints.layouts import to_mmcls
from hrnet_keras.checkpoints.reader import CheckpointError, read_state_dict
from hrnet_keras.configs import get_arch, get_preset

__all__ = [
    "CheckpointError",
    "ChecksumError",
    "DownloadError",
    "HubError",
    "LoadedCheckpoint",
    "cache_dir",
    "checkpoint_url",
    "download",
    "fetch_checkpoint",
    "file_sha256",
    "is_hub_handle",
    "load_checkpoint_into",
    "verify",
]

MIRROR_ENV = "HRNET_KERAS_MIRROR"


@dataclasses.dataclass(frozen=True)
class LoadedCheckpoint:
    """What `load_checkpoint_into` read: the file, its layout and its sha256."""

    path: str
    layout: str  # "mmcls" or "official"
    sha256: str


def checkpoint_url(preset):
    """The published URL, or the same file name under `$HRNET_KERAS_MIRROR`."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{preset.filename}" if mirror else preset.url


def load_checkpoint_into(model, path, arch_name):
    """Check (published names), read and assign a torch/safetensors checkpoint into `model`.

    Any known layout; a headless `model` takes the backbone (and neck) keys only.
    """
    from hrnet_keras.checkpoints.keymap import assign_state

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file not found: {path}")
    sha256 = verify(path)
    state = read_state_dict(path)
    try:
        layout, state = to_mmcls(state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    arch = get_arch(arch_name)
    assign_state(
        model, state, source=path, expected_width=arch.width, expected_arch=arch.name, release=True
    )
    return LoadedCheckpoint(path=path, layout=layout, sha256=sha256)


def fetch_checkpoint(name, *, cache=None, progress=True, local_only=False):
    """Path of row `name`'s published checkpoint, downloading it if absent.

    mmcls rows: the `.pth` in the cache (a file already there is used as is;
    `load_checkpoint_into` checks its sha256). Hub rows (`hf://`): the Hub cache's
    `model.safetensors`, checked by `hub.fetch`; `local_only` forbids downloading.
    """
    preset = get_preset(name)
    if is_hub_handle(preset.url):
        from hrnet_keras.checkpoints import hub

        return Path(hub.fetch(preset.url, arch=preset.arch, local_only=local_only).path)
    checkpoint = (Path(cache) if cache else cache_dir()) / preset.filename
    if not checkpoint.is_file():
        download(
            checkpoint_url(preset),
            checkpoint,
            sha256_prefix=preset.sha256_prefix,
            progress=progress,
        )
    return checkpoint
