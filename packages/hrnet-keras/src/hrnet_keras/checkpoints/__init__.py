"""Published checkpoints -> Keras weights: read safely, map keys, convert, cache."""

import os
from pathlib import Path

from hrnet_keras.blocks import layer_name
from hrnet_keras.checkpoints.download import DownloadError, cache_dir, download
from hrnet_keras.checkpoints.keymap import assign_state
from hrnet_keras.checkpoints.layouts import to_mmcls
from hrnet_keras.checkpoints.reader import CheckpointError, read_state_dict
from hrnet_keras.configs import PRESETS, get_arch, get_preset

__all__ = [
    "CheckpointError",
    "DownloadError",
    "cache_dir",
    "checkpoint_url",
    "convert_checkpoint",
    "download",
    "ensure_converted",
    "fetch_checkpoint",
    "load_checkpoint_into",
    "load_weights_into",
]

MIRROR_ENV = "HRNET_KERAS_MIRROR"


def checkpoint_url(preset):
    """The published URL, or the same file name under `$HRNET_KERAS_MIRROR`."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{preset.filename}" if mirror else preset.url


def load_checkpoint_into(model, path, arch_name):
    """Read a torch/safetensors checkpoint of any known layout into `model`."""
    state = read_state_dict(path)
    try:
        layout, state = to_mmcls(state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    assign_state(model, state, source=str(path), expected_width=get_arch(arch_name).width)
    return layout


def convert_checkpoint(src, name, out_dir):
    """Convert `src` (a .pth/.safetensors file) for row `name`.

    Writes `<out_dir>/<name>.weights.h5` and a self-contained `<name>.keras`
    (softmax head, as keras.applications); returns both paths.
    """
    from hrnet_keras.model import create_model

    preset = get_preset(name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = create_model(name)
    load_checkpoint_into(model, src, name)
    weights_path = out_dir / preset.keras_weights
    model_path = out_dir / preset.keras_model
    for path, save in ((weights_path, model.save_weights), (model_path, model.save)):
        tmp = path.with_name(".tmp-" + path.name)  # keeps the suffix Keras checks
        save(str(tmp))
        os.replace(tmp, path)
    return weights_path, model_path


def fetch_checkpoint(name, *, cache=None, progress=True):
    """Path of row `name`'s published `.pth` in the cache, downloading it if absent."""
    preset = get_preset(name)
    checkpoint = (Path(cache) if cache else cache_dir()) / preset.filename
    if not checkpoint.is_file():
        download(
            checkpoint_url(preset),
            checkpoint,
            sha256_prefix=preset.sha256_prefix,
            progress=progress,
        )
    return checkpoint


def ensure_converted(name, *, cache=None, allow_download=True, progress=True):
    """Path of row `name`'s `.weights.h5` in the cache, converting on first use.

    Uses the converted file if present, else the cached `.pth`, else downloads
    the published checkpoint (sha256-checked) when `allow_download`.
    """
    preset = get_preset(name)
    cache = Path(cache) if cache else cache_dir()
    converted = cache / preset.keras_weights
    if converted.is_file():
        return converted
    if not allow_download and not (cache / preset.filename).is_file():
        raise FileNotFoundError(
            f"No weights for {name} in {cache} (neither {preset.keras_weights} nor "
            f"{preset.filename}). Get them with: python -m hrnet_keras.convert "
            f"--download {name} --out {cache}"
        )
    convert_checkpoint(fetch_checkpoint(name, cache=cache, progress=progress), name, cache)
    return converted


def load_weights_into(model, weights, arch_name):
    """`create_model(weights=...)`: "imagenet", a row name, or a file path."""
    if weights == "imagenet":
        weights = arch_name
    if weights in PRESETS:
        if get_preset(weights).arch != get_preset(arch_name).arch:
            raise ValueError(
                f"weights={weights!r} are for {get_preset(weights).arch}, not {arch_name}."
            )
        weights = ensure_converted(weights)
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights={weights!r} is neither a known row ({', '.join(PRESETS)}), "
            "'imagenet', nor an existing file."
        )
    if path.endswith(".keras"):
        import keras

        _copy_weights(keras.models.load_model(path, compile=False), model)
    elif path.endswith(".weights.h5"):
        if layer_name("head.fc") in {layer.name for layer in model.layers}:
            model.load_weights(path)
        else:  # headless: read into a full classifier, then copy by layer name
            from hrnet_keras.model import create_model

            full = create_model(arch_name, classifier_activation=None)
            full.load_weights(path)
            _copy_weights(full, model)
    else:
        load_checkpoint_into(model, path, arch_name)


def _copy_weights(src, dst):
    """Copy weights layer by layer, matching names; every `dst` layer must be found."""
    by_name = {layer.name: layer for layer in src.layers}
    for layer in dst.layers:
        if not layer.weights:
            continue
        if layer.name not in by_name:
            raise CheckpointError(f"Saved model has no layer {layer.name}.")
        layer.set_weights(by_name[layer.name].get_weights())
