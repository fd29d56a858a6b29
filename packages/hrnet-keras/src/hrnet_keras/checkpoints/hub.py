"""Checkpoints on the Hugging Face Hub by name: `hf://timm/hrnet_w18.ms_aug_in1k[@revision]`.

Through `huggingface_hub` (the optional extra `hrnet-keras[hub]`): its cache
(`HF_HUB_CACHE`, `HF_HOME`), `HF_HUB_OFFLINE=1` (cached files only) and the revision
after `@` (branch, tag or commit; default `main`). The repository's `config.json`
"architecture" must be the HRNet the model is built as, and `model.safetensors` must
hash to its cache blob's name (the sha256 the Hub gives large files).
"""

import dataclasses
import json
import os
import re

from hrnet_keras.checkpoints.checksums import ChecksumError, file_sha256
from hrnet_keras.checkpoints.reader import CheckpointError
from hrnet_keras.configs import TIMM_ARCHS

SCHEME = "hf://"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
HANDLE = re.compile(r"^hf://([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?$")
SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")


class HubError(CheckpointError):
    """A hub checkpoint that cannot be had or is not the one asked for; the message says why."""


@dataclasses.dataclass(frozen=True)
class HubCheckpoint:
    """A checkpoint fetched from the Hub: local file, its sha256 and the repo's architecture."""

    handle: str
    repo_id: str
    revision: str
    path: str
    sha256: str
    architecture: str  # timm's name, from config.json
    arch: str  # this package's architecture name


def is_hub_handle(value):
    return isinstance(value, str) and value.startswith(SCHEME)


def parse_handle(handle):
    """(repo_id, revision or None) of `hf://owner/name[@revision]`."""
    match = HANDLE.match(handle)
    if not match:
        raise HubError(
            f"{handle!r} is not a hub checkpoint name; expected hf://OWNER/NAME[@REVISION], "
            "e.g. hf://timm/hrnet_w18.ms_aug_in1k."
        )
    return match.group(1), match.group(2)


def offline():
    """Whether `HF_HUB_OFFLINE` asks for cached files only (read at each call)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_cache_dir():
    """`HF_HUB_CACHE`, else `HF_HOME`/hub, else None (huggingface_hub's default)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def _download(handle, repo_id, filename, revision, local_only):
    try:
        import huggingface_hub
    except ImportError:
        raise HubError(
            f"{handle} needs huggingface_hub: pip install 'hrnet-keras[hub]' "
            "(or pip install huggingface_hub)."
        ) from None
    try:
        return huggingface_hub.hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=hub_cache_dir(),
            local_files_only=local_only or offline(),
            library_name="hrnet-keras",
        )
    except Exception as exc:  # huggingface_hub's errors: HTTP, not cached, no such revision
        where = f"{repo_id}@{revision or 'main'}/{filename}"
        hint = (
            " It is not in the cache and HF_HUB_OFFLINE is set: fetch it once online."
            if local_only or offline()
            else ""
        )
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise HubError(
            f"Cannot get {where} from the Hugging Face Hub ({type(exc).__name__}: {detail})." + hint
        ) from None


def _check_blob(handle, path):
    """sha256 of `path`, checked against the cache blob it links to (named by its sha256)."""
    real = os.path.realpath(path)
    sha256 = file_sha256(real)
    blob = os.path.basename(real)
    if os.path.basename(os.path.dirname(real)) == "blobs" and SHA256_NAME.match(blob):
        if sha256 != blob:
            raise ChecksumError(
                f"{real}: sha256 {sha256[:12]}... is not the cache blob's name {blob[:12]}... "
                f"({handle}); the cached file is damaged: delete it and download it again."
            )
    return sha256


def _architecture(handle, config_path):
    try:
        with open(config_path) as f:
            config = json.load(f)
        return config["architecture"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HubError(
            f"{handle}: {CONFIG_FILE} has no readable 'architecture' ({type(exc).__name__}); "
            "is this a timm checkpoint?"
        ) from None


def fetch(handle, *, arch=None, local_only=False):
    """The `HubCheckpoint` for `handle`, downloaded into the Hub cache unless there.

    `arch` (this package's architecture name) is checked against `config.json`;
    without it the architecture is taken from there.
    """
    repo_id, revision = parse_handle(handle)
    config = _download(handle, repo_id, CONFIG_FILE, revision, local_only)
    architecture = _architecture(handle, config)
    found = TIMM_ARCHS.get(architecture)
    if found is None:
        raise HubError(
            f"{handle} is a {architecture!r} checkpoint ({CONFIG_FILE}), not an HRNet this "
            f"package builds ({', '.join(TIMM_ARCHS)})."
        )
    if arch is not None and found.name != arch:
        raise HubError(
            f"{handle} holds {architecture} ({CONFIG_FILE}), which is {found.name}, but the "
            f"model is {arch}; build {found.name} for it."
        )
    path = _download(handle, repo_id, WEIGHTS_FILE, revision, local_only)
    return HubCheckpoint(
        handle=handle,
        repo_id=repo_id,
        revision=revision or "main",
        path=path,
        sha256=_check_blob(handle, path),
        architecture=architecture,
        arch=found.name,
    )
