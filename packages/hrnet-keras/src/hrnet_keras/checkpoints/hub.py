"""Checkpoints on the Hugging Face Hub by name: `hf://timm/hrnet_w18.ms_aug_in1k[@revision]`.

Through `huggingface_hub` (the optional extra `hrnet-keras[hub]`): its cache
(`HF_HUB_CACHE`, `HF_HOME`), `HF_HUB_OFFLINE=1` (cached files only) and the revision
after `@` (branch, tag or commit; default `main`). Names are checked before any file is
touched: a repository id as the Hub allows them, a revision of `/`-separated names (as
`refs/pr/1`) with no `.` or `..` among them, and a cached ref that lies inside its
repository's `refs/` and names a commit. The repository's `config.json` "architecture"
must be the HRNet the model is built as, and `model.safetensors` must be a blob of that
repository in the cache that hashes to its name (the sha256 the Hub gives large files).
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
HANDLE = re.compile(r"^hf://([^@]*)(?:@(.*))?$")
# The Hub's repository names: word characters, "-" and ".", starting and ending with a
# word character, at most 96, no "--" or ".." (huggingface_hub's validate_repo_id).
REPO_PART = re.compile(r"^(?!.*(--|\.\.))\w(?:[\w.-]{0,94}\w)?$")
REVISION_PART = re.compile(r"^[\w.+-]+$")
SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


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
    """(repo_id, revision or None) of `hf://owner/name[@revision]`, both checked as names."""
    match = HANDLE.match(handle)
    parts = match.group(1).split("/") if match else []
    if len(parts) != 2 or not all(REPO_PART.match(part) for part in parts):
        raise HubError(
            f"{handle!r} is not a hub checkpoint name; expected hf://OWNER/NAME[@REVISION], "
            "e.g. hf://timm/hrnet_w18.ms_aug_in1k (names of letters, digits, '_', '-', '.')."
        )
    revision = match.group(2)
    if revision is not None and not all(
        REVISION_PART.match(part) and part not in (".", "..") for part in revision.split("/")
    ):
        raise HubError(
            f"{handle!r}: revision {revision!r} is not a branch, tag or commit name; expected "
            "names of letters, digits, '_', '-', '.', '+' joined by '/' (e.g. main, v1.0, "
            "refs/pr/1), no '.' or '..' among them and no leading or trailing '/'."
        )
    return match.group(1), revision


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


def _huggingface_hub(handle):
    try:
        import huggingface_hub
    except ImportError:
        raise HubError(
            f"{handle} needs huggingface_hub: pip install 'hrnet-keras[hub]' "
            "(or pip install huggingface_hub)."
        ) from None
    return huggingface_hub


def repo_cache(repo_id):
    """The real path of `repo_id`'s folder in the Hub cache in use."""
    from huggingface_hub import constants

    cache = hub_cache_dir() or constants.HF_HUB_CACHE
    return os.path.join(os.path.realpath(cache), f"models--{repo_id.replace('/', '--')}")


def _inside(path, folder):
    return os.path.realpath(path).startswith(folder + os.sep)


def _check_ref(handle, repo_id, revision):
    """Refuse a cached ref that lies outside its repository's `refs/` or names no commit
    (huggingface_hub reads it as the snapshot folder to use); an uncached one is fine."""
    refs = os.path.join(repo_cache(repo_id), "refs")
    ref = os.path.join(refs, revision)
    if not os.path.lexists(ref):
        return
    if not _inside(ref, refs) or not os.path.isfile(ref):
        raise HubError(
            f"{handle}: the cached ref {ref} is not a file inside {refs} (it resolves to "
            f"{os.path.realpath(ref)}); delete it and fetch the revision again."
        )
    with open(ref, "rb") as f:
        commit = f.read(64).decode("ascii", "replace").strip()
    if not COMMIT.match(commit):
        raise HubError(
            f"{handle}: the cached ref {ref} names no commit (40 hex digits); delete it and "
            "fetch the revision again."
        )


def _download(handle, repo_id, filename, revision, local_only):
    huggingface_hub = _huggingface_hub(handle)
    try:
        path = huggingface_hub.hf_hub_download(
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
    folder = repo_cache(repo_id)
    if not _inside(path, folder):
        raise HubError(
            f"{handle}: {path} resolves to {os.path.realpath(path)}, outside the cache folder "
            f"{folder} of {repo_id}; delete that snapshot and fetch it again."
        )
    return path


def _blob_name(repo_id, path):
    """The name of the blob of `repo_id` that `path` resolves to, if a sha256; else None."""
    real = os.path.realpath(path)
    blob = os.path.basename(real)
    in_blobs = os.path.dirname(real) == os.path.join(repo_cache(repo_id), "blobs")
    return blob if in_blobs and SHA256_NAME.match(blob) else None


def _check_blob(handle, repo_id, path):
    """sha256 of `path`, which must be a blob of `repo_id` in the cache named by its sha256."""
    real = os.path.realpath(path)
    blob = _blob_name(repo_id, path)
    if blob is None:
        raise HubError(
            f"{handle}: {path} is not a blob of the cache named by its sha256 (it resolves to "
            f"{real}); delete that snapshot and fetch it again."
        )
    sha256 = file_sha256(real)
    if sha256 != blob:
        raise ChecksumError(
            f"{real}: sha256 {sha256[:12]}... is not the cache blob's name {blob[:12]}... "
            f"({handle}); the cached file is damaged: delete it and download it again."
        )
    return sha256


def cache_origin(path, sha256):
    """(repo_id, commit) when `path` is a Hub cache snapshot's file,
    `.../models--OWNER--NAME/snapshots/COMMIT/FILE`, linking to a blob of that
    repository named by `sha256` (the file's own, computed by the caller); else None."""
    path = os.path.abspath(path)
    snapshot = os.path.dirname(path)
    folder = os.path.dirname(os.path.dirname(snapshot))
    commit, name = os.path.basename(snapshot), os.path.basename(folder)
    if os.path.basename(os.path.dirname(snapshot)) != "snapshots" or not COMMIT.match(commit):
        return None
    owner, _, repo = name.removeprefix("models--").partition("--")
    if not name.startswith("models--") or not (REPO_PART.match(owner) and REPO_PART.match(repo)):
        return None
    blob = os.path.join(os.path.realpath(folder), "blobs", sha256)
    return (f"{owner}/{repo}", commit) if os.path.realpath(path) == blob else None


def published_sha256(handle):
    """The sha256 of `model.safetensors` at the handle's revision (default `main`) in the
    Hub cache, as its blob's name says; None if the cache does not hold it, or holds it
    in a way `fetch` refuses (a ref outside the cache, a file not a blob). Reads the
    cache only."""
    repo_id, revision = parse_handle(handle)
    try:
        huggingface_hub = _huggingface_hub(handle)
        _check_ref(handle, repo_id, revision or "main")
    except HubError:
        return None
    path = huggingface_hub.try_to_load_from_cache(
        repo_id, WEIGHTS_FILE, cache_dir=hub_cache_dir(), revision=revision
    )
    return _blob_name(repo_id, path) if isinstance(path, str) else None


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
    _huggingface_hub(handle)
    _check_ref(handle, repo_id, revision or "main")
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
        sha256=_check_blob(handle, repo_id, path),
        architecture=architecture,
        arch=found.name,
    )
