"""Converted Keras weights per row: found in --weights-dir, else downloaded and converted."""

import json
import threading
from pathlib import Path

from hrnet_keras.configs import convert_command, get_preset
from hrnet_keras.weight_shapes import expected_tensors, first_mismatch

from hrnet_eval import programs
from hrnet_eval.spec import ModelSpec
from hrnet_eval.errors import EvalError, one_line

CHECKED_FILE = "tensors.json"  # a checked entry's payload: how many tensors were read
_CONVERTING = threading.Lock()


class WeightsError(EvalError, RuntimeError):
    """Weights that are missing or unusable; the message gives the command that gets them."""


def read_tensors(path):
    """({dataset name: shape}, name of the first tensor holding NaN or inf, or None) of an
    HDF5 weights file, each tensor read: a truncated file fails here (OSError), not in a
    worker."""
    import h5py
    import numpy as np

    shapes, nonfinite = {}, []

    def visit(key, item):
        if isinstance(item, h5py.Dataset):
            value = item[()]
            shapes[key] = item.shape
            if not nonfinite and np.issubdtype(np.asarray(value).dtype, np.floating):
                if not np.isfinite(value).all():
                    nonfinite.append(key)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return shapes, (nonfinite[0] if nonfinite else None)


def check_tensors(name, path, shapes, nonfinite, weights_dir):
    """Refuse weights whose shapes are not row `name`'s (derived from its configuration,
    without Keras) or that hold NaN or inf."""
    mismatch = first_mismatch(name, shapes)
    if mismatch:
        raise WeightsError(
            f"{path} does not hold the weights of {name}: {mismatch}. Is it another row's file? "
            f"Convert {name} again: {convert_command(name, weights_dir)}"
        )
    if nonfinite:
        layer = expected_tensors(name).get(nonfinite, ("",))[0]
        raise WeightsError(
            f"{path} holds NaN or inf in tensor {nonfinite}"
            + (f" ({layer})" if layer else "")
            + f": {name} would score meaningless numbers. Convert it again: "
            f"{convert_command(name, weights_dir)}"
        )


def is_published(preset, source, source_sha256):
    """Whether weights converted from `source` (file name, sha256) are `preset`'s
    published checkpoint: by the sha256 prefix of the row's file name, or for a hub row
    the file of its repository in the Hub cache (sha256 checked against its blob name)."""
    if source_sha256 is None:
        return False
    if preset.hub_repo:  # the Hub cache's folder of that repository
        return f"models--{preset.hub_repo.replace('/', '--')}" in Path(source).parts
    return source_sha256.startswith(preset.sha256_prefix)


def checked_key(name, sha256):
    """The program cache's key of "row `name`'s weights file with these bytes passed
    `check_tensors`": a file with other bytes has another key."""
    import hrnet_keras

    return {
        "kind": "checked",
        "format": programs.FORMAT,
        "row": name,
        "weights": f"sha256:{sha256}",
        "hrnet_keras": hrnet_keras.__version__,
    }


def _was_checked(cache, key, out):
    try:
        return cache is not None and cache.read(key) is not None
    except programs.CacheMiss as miss:
        if str(miss) and out is not None:
            out(f"note: {miss}", flush=True)
        return False


def _record_checked(cache, key, tensors):
    try:
        cache.write(key, CHECKED_FILE, lambda path: path.write_text(json.dumps(tensors)))
    except OSError:  # a read-only cache: the next run checks the file again
        pass


def resolve(name, weights_dir=None, *, allow_download=True, program_cache=None, out=None):
    """The `ModelSpec` of row `name`: its NAME.weights.h5 in `weights_dir` (the
    hrnet-keras cache by default), converting a .pth found there (sha256-checked),
    downloaded, or (timm's rows) fetched from the Hugging Face Hub. `published` tells
    whether the weights come from the row's published checkpoint (`is_published`).

    Every tensor is read and checked (`check_tensors`) unless the program cache at
    `program_cache` (a folder) records that a file of the same sha256 passed for this row;
    a damaged record is removed, named through `out` (like `print`) and checked again."""
    from hrnet_keras.checkpoints import cache_dir, file_sha256
    from hrnet_keras.checkpoints.checksums import recorded_source

    preset = get_preset(name)
    weights_dir = Path(weights_dir).expanduser().resolve() if weights_dir else cache_dir()
    converted = weights_dir / preset.keras_weights
    if not converted.is_file():
        local = preset.hub_repo or (weights_dir / preset.filename).is_file()
        if not allow_download and not local:
            raise WeightsError(
                f"No weights for {name} in {weights_dir} (neither {preset.keras_weights} nor "
                f"{preset.filename}). Get them with: {convert_command(name, weights_dir)}"
            )
        from hrnet_keras.checkpoints import CheckpointError, DownloadError
        from hrnet_keras.checkpoints.conversion import ensure_converted  # imports Keras

        try:
            with _CONVERTING:  # one download and conversion at a time
                ensure_converted(name, cache=weights_dir, allow_download=allow_download)
        except DownloadError as exc:
            raise WeightsError(
                f"No weights for {name} in {weights_dir} and the download failed ({exc}). "
                f"Get them with: {convert_command(name, weights_dir)} (or copy {preset.filename} there)"
            ) from None
        except (CheckpointError, OSError, ValueError) as exc:
            raise WeightsError(
                f"Cannot convert the weights of {name} in {weights_dir}: {exc}"
            ) from None
    cache = programs.ProgramCache(program_cache) if program_cache else None
    shapes = None
    try:
        sha256 = file_sha256(converted)
        key = checked_key(name, sha256)
        source, source_sha256 = recorded_source(converted)
        if not _was_checked(cache, key, out):
            shapes, nonfinite = read_tensors(converted)
            if not shapes:
                raise OSError("it holds no tensors")
    except (OSError, KeyError, RuntimeError) as exc:
        reason = one_line(exc)
        raise WeightsError(
            f"{converted} is not a readable Keras weights file (truncated or corrupted? "
            f"{reason[:200]}). Convert it again: {convert_command(name, weights_dir)}"
        ) from None
    if shapes is not None:
        check_tensors(name, converted, shapes, nonfinite, weights_dir)
        if cache is not None:
            _record_checked(cache, key, len(shapes))
    return ModelSpec(
        name=name,
        weights=str(converted),
        key="sha256:" + sha256,
        source_sha256=source_sha256,
        published=is_published(preset, source, source_sha256),
    )
