"""sha256 of checkpoint files: the table's published files are checked wherever they come from.

A file bearing one of the table's published file names must match the sha256
prefix that the name carries; other names are the user's own files. Converted
`.weights.h5` files record the sha256 of their source in HDF5 attributes, and for a
file of the Hugging Face Hub cache its repository and commit.
"""

import hashlib
import os

from hrnet_keras.checkpoints.reader import CheckpointError
from hrnet_keras.configs import convert_command, published_row

SOURCE_SHA256 = "hrnet_keras.source_sha256"
SOURCE_FILE = "hrnet_keras.source_file"
SOURCE_REPO = "hrnet_keras.source_repo"
SOURCE_REVISION = "hrnet_keras.source_revision"


class ChecksumError(CheckpointError):
    """A file with a published name whose content is not the published file."""


def file_sha256(path):
    """Hex sha256 of a file's content."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


def verify(path):
    """sha256 of `path`; raises `ChecksumError` if it bears a published name but differs."""
    sha256 = file_sha256(path)
    row = published_row(os.path.basename(path))
    if row is not None and not sha256.startswith(row.sha256_prefix):
        raise ChecksumError(
            f"{path}: sha256 {sha256[:len(row.sha256_prefix)]}... does not match the published "
            f"{row.sha256_prefix} of {row.filename} ({row.name}); nothing was converted. "
            f"Delete it and download it again: {convert_command(row.name)}"
        )
    return sha256


def record_source(weights_path, source_path, sha256):
    """Write the source's name and sha256 into a `.weights.h5` file's root attributes, and
    its Hub repository and commit when it is a Hub cache blob named by that sha256."""
    import h5py

    from hrnet_keras.checkpoints.hub import cache_origin

    origin = cache_origin(source_path, sha256)
    with h5py.File(weights_path, "a") as f:
        f.attrs[SOURCE_FILE] = os.path.basename(source_path)
        f.attrs[SOURCE_SHA256] = sha256
        if origin is not None:
            f.attrs[SOURCE_REPO], f.attrs[SOURCE_REVISION] = origin


def recorded_source(weights_path):
    """(source file name, sha256) recorded in a `.weights.h5`, or (None, None) if none is."""
    import h5py

    with h5py.File(weights_path, "r") as f:
        name, sha256 = f.attrs.get(SOURCE_FILE), f.attrs.get(SOURCE_SHA256)
    return (str(name), str(sha256)) if sha256 is not None else (None, None)


def recorded_hub_source(weights_path):
    """(Hub repository, commit) recorded in a `.weights.h5`, or (None, None) if none is."""
    import h5py

    with h5py.File(weights_path, "r") as f:
        repo, revision = f.attrs.get(SOURCE_REPO), f.attrs.get(SOURCE_REVISION)
    return (str(repo), str(revision)) if repo is not None else (None, None)
