"""`create_model(weights=...)`: load a row's weights or a file into the model just built.

`.weights.h5` and `.keras` files go through Keras' own loaders; `.pth` and
`.safetensors` files through `hrnet_keras.checkpoints`. A full classifier's
`.weights.h5` loads into a headless model through a full model built here,
whose layers are copied across by name.
"""

import os
import shutil
import tempfile
import zipfile

from hrnet_keras import network
from hrnet_keras.architecture import layer_name
from hrnet_keras.checkpoints import (
    CheckpointError,
    DownloadError,
    is_hub_handle,
    load_checkpoint_into,
)
from hrnet_keras.checkpoints.conversion import ensure_converted
from hrnet_keras.configs import ALIASES, PRESETS, convert_command, get_preset


KERAS_WEIGHTS = "model.weights.h5"  # the weights inside a `.keras` zip, as Keras writes it


class WeightsFileError(ValueError):
    """A `.weights.h5` / `.keras` file that cannot be read; the message names it."""


def _row_name(weights):
    """The row a `weights` string names (a row or an alias), or None."""
    if not isinstance(weights, str):
        return None
    name = ALIASES.get(weights, weights)
    return name if name in PRESETS else None


def is_named_weights(weights):
    """Whether `weights` names published 1000-class weights (a row, an alias, `hf://...`)."""
    return _row_name(weights) is not None or is_hub_handle(weights)


def resolve_weights(weights, name):
    """(file, row) that `weights` ("imagenet", a row name, `hf://...` or a path) stands for.

    Row names resolve to the converted `.weights.h5` in the cache, converting
    the published checkpoint on first use.
    Hub names resolve to the Hub cache's `model.safetensors`, checked there.
    """
    row = _row_name(name if weights == "imagenet" else weights)
    if row is not None:
        try:
            return os.fspath(ensure_converted(row)), row
        except DownloadError as exc:
            raise DownloadError(f"{exc} {offline_instructions(row)}") from None
    if is_hub_handle(weights):
        from hrnet_keras.checkpoints import hub

        return hub.fetch(weights, arch=get_preset(name).arch).path, name
    return os.fspath(weights), name


def offline_instructions(row):
    """Where a row's published file goes without a network, and the command that converts it."""
    from hrnet_keras.checkpoints import cache_dir, checkpoint_url

    preset, cache = get_preset(row), cache_dir()
    return (
        f"To install the weights of {row} by hand: fetch {checkpoint_url(preset)}, put "
        f"{preset.filename} in {cache} ($HRNET_KERAS_CACHE), then run: python -m "
        f"hrnet_keras.convert {cache / preset.filename} --model {row} --out {cache} "
        f"(or call create_model again: it converts a {preset.filename} found there)."
    )


def load_weights(model, weights, name):
    """Load `weights` ("imagenet", a row name or a file) into `model`, built for row `name`."""
    path, row = resolve_weights(weights, name)
    full = layer_name("head.fc") in {layer.name for layer in model.layers}
    if path.endswith(".keras"):
        if not (full and _read_keras_weights(model, path)):
            _copy_weights(_read_keras(path, row), model, path)
    elif path.endswith(".weights.h5"):
        if full:
            _read_weights_h5(model, path, row)
        else:  # headless: read into a full classifier, then copy by layer name
            classifier = network.classifier(name)
            _read_weights_h5(classifier, path, row)
            _copy_weights(classifier, model, path)
    else:
        load_checkpoint_into(model, path, name)


def _damaged(path, exc, name):
    keras_model = path.endswith(".keras")
    kind = "Keras model" if keras_model else "Keras weights file"
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
    command = convert_command(name, os.path.dirname(path) or ".")
    return WeightsFileError(
        f"{path} is not a readable {kind} (truncated or corrupted? {type(exc).__name__}: "
        f"{reason[:200]}). Copy it again, or convert it again: {command}"
        + (" --keras" if keras_model else "")
    )


def _read_keras(path, name):
    import keras

    try:
        zipfile.ZipFile(path).close()  # Keras reports a truncated zip as "File not found"
        return keras.models.load_model(path, compile=False)
    except (zipfile.BadZipFile, OSError, KeyError, ValueError, TypeError) as exc:
        if "safe_mode" in str(exc):
            raise _carries_code(path, exc) from None
        raise _damaged(path, exc, name) from None


def _read_keras_weights(model, path):
    """Read a `.keras` file's weights straight into `model` (a full classifier: Keras reads
    them in layer order, as a `.weights.h5`) where they fit it and its config holds no code
    (`__lambda__`, which safe mode refuses); whether it did. Reviving the file's model
    (`_read_keras`) and copying by layer name builds a second model."""
    with tempfile.TemporaryDirectory() as tmp:
        weights = os.path.join(tmp, KERAS_WEIGHTS)
        try:
            with zipfile.ZipFile(path) as archive:
                config = archive.read("config.json").decode("utf-8", errors="replace")
                if '"__lambda__"' in config:
                    return False
                # unzipped first: h5py reading inside the zip seeks slowly (2x the load)
                with archive.open(KERAS_WEIGHTS) as src, open(weights, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except Exception:  # BadZipFile, zlib.error, ...: `_read_keras` names what is wrong
            return False
        try:
            model.load_weights(weights)
        except (ValueError, KeyError, OSError, RuntimeError, TypeError):  # another model
            return False
    return True


def _carries_code(path, exc):
    """The refusal of a `.keras` file that holds code (a `Lambda` layer's Python function)."""
    reason = " ".join(str(exc).split())
    return WeightsFileError(
        f"{path} carries code (a Python function inside the file, e.g. a Lambda layer's), "
        f"which Keras' safe mode refused to load; hrnet_keras loads .keras files in safe mode "
        f"only and runs nothing from them. Use a .keras file without code, or the row's "
        f".weights.h5. Keras said: {reason}"
    )


def _read_weights_h5(model, path, name):
    import h5py

    try:
        h5py.File(path, "r").close()
        model.load_weights(path)
    except (OSError, KeyError, RuntimeError) as exc:
        raise _damaged(path, exc, name) from None
    except ValueError as exc:
        raise WeightsFileError(
            f"{path} does not fit {model.name} ({str(exc).strip().splitlines()[0][:200]}); "
            f"is it the weights of another row or head?"
        ) from None


def _copy_weights(src, dst, path):
    """Copy weights layer by layer, matching names; every `dst` layer must be found."""
    by_name = {layer.name: layer for layer in src.layers}
    for layer in dst.layers:
        if not layer.weights:
            continue
        if layer.name not in by_name:
            raise CheckpointError(f"{path} has no layer {layer.name}.")
        layer.set_weights(by_name[layer.name].get_weights())


def check_weights_argument(weights, name):
    """Fail early on a `weights` that is neither "imagenet", a row of `name`'s architecture,
    a hub name (`hf://OWNER/NAME[@REVISION]`), nor a file."""
    if weights is None or weights == "imagenet":
        return
    if _row_name(weights) is not None:
        if get_preset(weights).arch != get_preset(name).arch:
            raise ValueError(f"weights={weights!r} are for {get_preset(weights).arch}, not {name}.")
        return
    if is_hub_handle(weights):
        from hrnet_keras.checkpoints.hub import parse_handle

        parse_handle(weights)
        return
    if not os.path.isfile(os.fspath(weights)):
        raise FileNotFoundError(
            f"weights={weights!r} is neither a known row ({', '.join(PRESETS)}), "
            "'imagenet', a hub name (hf://OWNER/NAME), nor an existing file."
        )
