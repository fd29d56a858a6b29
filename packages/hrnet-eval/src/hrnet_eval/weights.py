"""Converted Keras weights per row: found in --weights-dir, else downloaded and converted."""

import json
import threading
from pathlib import Path

from hrnet_keras.configs import convert_command, get_preset
from hrnet_keras.weight_shapes import expected_tensors, first_mismatch

from hrnet_eval import programs
from hrnet_eval.spec import ModelSpec
from hrnet_eval.errors import EvalError, one_line
from hrnet_eval.permissions import check_private, make_private

CHECKED_FILE = "tensors.json"  # a checked entry's payload: how many tensors were read
# What a stored verdict vouches for; another value is another key, so verdicts of fewer
# checks (1: shapes and finite tensors) do not vouch for a file these checks have not seen.
CHECKS = "shapes, finite tensors, finite fold (2)"
_CONVERTING = threading.Lock()


class WeightsError(EvalError, RuntimeError):
    """Weights that are missing or unusable; the message gives the command that gets them."""


def read_tensors(path):
    """({dataset name: shape}, name of the first tensor holding NaN or inf or None, what
    `fold_check.fold_problem` reads: {name: a vector, or a 4-D kernel's largest |value| per
    output channel}) of an HDF5 weights file, each tensor read once: a truncated file fails
    here (OSError), not in a worker."""
    import h5py
    import numpy as np

    shapes, nonfinite, folding = {}, [], {}

    def visit(key, item):
        if isinstance(item, h5py.Dataset):
            value = item[()]
            shapes[key] = item.shape
            if not np.issubdtype(np.asarray(value).dtype, np.floating):
                return
            if not nonfinite and not np.isfinite(value).all():
                nonfinite.append(key)
            if value.ndim <= 1:
                folding[key] = value
            elif value.ndim == 4:
                folding[key] = np.abs(value).reshape(-1, value.shape[-1]).max(axis=0)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return shapes, (nonfinite[0] if nonfinite else None), folding


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


def check_fold(name, path, folding, weights_dir):
    """Refuse weights whose BatchNorms do not fold into finite convs (`variance + epsilon
    <= 0`, or NaN or inf after the fold): no image could get finite logits from them.
    `folding`: what `read_tensors` kept of the file."""
    from hrnet_keras.fold_check import fold_problem

    problem = fold_problem(name, folding.__getitem__)
    if problem:
        raise WeightsError(
            f"{path}: {problem}: {name} cannot give finite logits. Convert it again: "
            f"{convert_command(name, weights_dir)}"
        )


def is_published(preset, source_sha256):
    """Whether weights converted from a source of sha256 `source_sha256` are `preset`'s
    published checkpoint: by the sha256 prefix of the row's file name, or for a hub row
    the bytes of its repository's file in the Hub cache (whose blob name is its sha256)."""
    if source_sha256 is None:
        return False
    if preset.hub_repo:
        from hrnet_keras.checkpoints.hub import published_sha256

        return source_sha256 == published_sha256(preset.url)
    return source_sha256.startswith(preset.sha256_prefix)


def checked_key(name, sha256):
    """The program cache's key of "row `name`'s weights file with these bytes passed
    `check_tensors` and `check_fold`": a file with other bytes, or a verdict of other
    checks (`CHECKS`), has another key."""
    import hrnet_keras

    return {
        "kind": "checked",
        "format": programs.FORMAT,
        "row": name,
        "weights": f"sha256:{sha256}",
        "checks": CHECKS,
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


def resolve(name, weights_dir=None, *, allow_download=True, compile_cache=None, out=None):
    """The `ModelSpec` of row `name`: its NAME.weights.h5 in `weights_dir` (the
    hrnet-keras cache by default), converting a .pth found there (sha256-checked),
    downloaded, or (timm's rows) fetched from the Hugging Face Hub. `published` tells
    whether the weights come from the row's published checkpoint (`is_published`).

    Every tensor is read and checked (`check_tensors`) unless the program cache at
    `compile_cache` (a folder) records that a file of the same sha256 passed for this row;
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

        check_private(weights_dir, "--weights-dir")  # what is converted there is trusted
        make_private(weights_dir)

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
    cache = programs.ProgramCache(compile_cache) if compile_cache else None
    shapes = None
    try:
        sha256 = file_sha256(converted)
        key = checked_key(name, sha256)
        source, source_sha256 = recorded_source(converted)
        if not _was_checked(cache, key, out):
            shapes, nonfinite, folding = read_tensors(converted)
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
        check_fold(name, converted, folding, weights_dir)
        if cache is not None:
            _record_checked(cache, key, len(shapes))
    return ModelSpec(
        name=name,
        weights=str(converted),
        key="sha256:" + sha256,
        source_sha256=source_sha256,
        published=is_published(preset, source_sha256),
    )
