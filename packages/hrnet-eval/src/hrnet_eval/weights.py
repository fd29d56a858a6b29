"""Converted Keras weights per row: found in --weights-dir, else downloaded and converted."""

import hashlib
from pathlib import Path

from hrnet_eval.spec import ModelSpec


class WeightsError(RuntimeError):
    """Weights that are missing or unusable; the message gives the command that gets them."""


def get_command(name, weights_dir):
    return f"python -m hrnet_keras.convert --download {name} --out {weights_dir}"


def file_sha256(path, chunk=1 << 22):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve(name, weights_dir=None, *, allow_download=True):
    """The `ModelSpec` of row `name`: its NAME.weights.h5 in `weights_dir` (the
    hrnet-keras cache by default), converting a .pth found there or downloaded."""
    from hrnet_keras.checkpoints import CheckpointError, DownloadError, cache_dir, ensure_converted
    from hrnet_keras.configs import get_preset

    preset = get_preset(name)
    weights_dir = Path(weights_dir).expanduser().resolve() if weights_dir else cache_dir()
    converted = weights_dir / preset.keras_weights
    if not converted.is_file():
        if not allow_download and not (weights_dir / preset.filename).is_file():
            raise WeightsError(
                f"No weights for {name} in {weights_dir} (neither {preset.keras_weights} nor "
                f"{preset.filename}). Get them with: {get_command(name, weights_dir)}"
            )
        try:
            ensure_converted(name, cache=weights_dir, allow_download=allow_download)
        except DownloadError as exc:
            raise WeightsError(
                f"No weights for {name} in {weights_dir} and the download failed ({exc}). "
                f"Get them with: {get_command(name, weights_dir)} (or copy {preset.filename} there)"
            ) from None
        except (CheckpointError, OSError, ValueError) as exc:
            raise WeightsError(
                f"Cannot convert the weights of {name} in {weights_dir}: {exc}"
            ) from None
    return ModelSpec(name=name, weights=str(converted), key="sha256:" + file_sha256(converted))
