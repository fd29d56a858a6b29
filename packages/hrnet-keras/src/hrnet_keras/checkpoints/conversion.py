"""Published checkpoints -> `.weights.h5` (and `.keras`): the functions behind
`python -m hrnet_keras.convert` and `create_model(weights="imagenet")`.

The one module of this package that builds a model (the 1000-class classifier it
writes), so the one that imports Keras at import time; `hrnet_keras.checkpoints`
itself does not import it.
"""

import urllib.parse
from pathlib import Path

from hrnet_keras.network import classifier
from hrnet_keras.checkpoints import (
    cache_dir,
    download,
    fetch_checkpoint,
    hub,
    is_hub_handle,
    load_checkpoint_into,
)
from hrnet_keras.checkpoints.checksums import record_source
from hrnet_keras.configs import PRESETS, convert_command, get_preset, hash_prefix_from_name
from hrnet_keras.files import atomic_write


def convert_checkpoint(src, name, out_dir, *, keras_model=False, out_name=None):
    """Convert `src` (a .pth/.safetensors file) for row `name` into `out_dir`.

    Builds the 1000-class classifier (softmax head, as keras.applications),
    loads `src` into it and writes `<out_name>.weights.h5` (default: the row's
    name) with the source's file name and sha256 in its HDF5 attributes; with
    `keras_model`, also a self-contained `<out_name>.keras`. Returns the paths written.
    """
    stem = out_name or get_preset(name).name
    out_dir = Path(out_dir)
    model = classifier(name, classifier_activation="softmax")
    loaded = load_checkpoint_into(model, src, name)
    written = [out_dir / f"{stem}.weights.h5"]
    with atomic_write(written[0]) as tmp:
        model.save_weights(tmp)
        record_source(tmp, loaded.path, loaded.sha256)
    if keras_model:
        written.append(out_dir / f"{stem}.keras")
        with atomic_write(written[1]) as tmp:
            model.save(tmp)
    return written


def ensure_converted(name, *, cache=None, allow_download=True, progress=True):
    """Path of row `name`'s `.weights.h5` in the cache, converting on first use.

    Uses the converted file if present, else the cached `.pth` (sha256-checked),
    else downloads the published checkpoint when `allow_download`.
    """
    preset = get_preset(name)
    cache = Path(cache) if cache else cache_dir()
    converted = cache / preset.keras_weights
    if converted.is_file():
        return converted
    if is_hub_handle(preset.url):
        checkpoint = fetch_checkpoint(name, local_only=not allow_download)
        convert_checkpoint(checkpoint, name, cache)
        return converted
    if not allow_download and not (cache / preset.filename).is_file():
        raise FileNotFoundError(
            f"No weights for {name} in {cache} (neither {preset.keras_weights} nor "
            f"{preset.filename}). Get them with: {convert_command(name, cache)}"
        )
    convert_checkpoint(fetch_checkpoint(name, cache=cache, progress=progress), name, cache)
    return converted


def _fetch(url, out_dir, progress=True):
    name = Path(urllib.parse.urlparse(url).path).name
    prefix = hash_prefix_from_name(name)
    return download(url, Path(out_dir) / name, sha256_prefix=prefix, progress=progress)


def convert_hub(handle, name, out_dir, *, keras_model=False):
    """Convert `hf://OWNER/NAME[@REVISION]`; `name` None: the architecture its config.json gives.

    Written as the row's files when the handle is a row's URL, else as `<NAME>.weights.h5`.
    """
    fetched = hub.fetch(handle, arch=None if name is None else get_preset(name).arch)
    rows = [p.name for p in PRESETS.values() if p.url == handle.split("@")[0]]
    out_name = rows[0] if rows else fetched.repo_id.rsplit("/", 1)[-1]
    return convert_checkpoint(
        fetched.path, name or fetched.arch, out_dir, keras_model=keras_model, out_name=out_name
    )


def convert_source(src, name, out_dir, *, keras_model=False, progress=True):
    """Convert a file, URL or hub name for row `name`; URLs are downloaded into `out_dir` first."""
    if is_hub_handle(src):
        return convert_hub(src, name, out_dir, keras_model=keras_model)
    if "://" in src:
        src = _fetch(src, out_dir, progress=progress)
    return convert_checkpoint(src, name, out_dir, keras_model=keras_model)


def convert_row(name, out_dir, *, keras_model=False, progress=True):
    """Download the published checkpoint of `name` (unless there) and convert it."""
    checkpoint = fetch_checkpoint(name, cache=out_dir, progress=progress)
    return convert_checkpoint(checkpoint, name, out_dir, keras_model=keras_model)
