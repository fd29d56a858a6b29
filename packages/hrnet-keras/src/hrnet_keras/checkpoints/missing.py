"""Which rows' weights are not on this machine, and the command that gets each (no Keras)."""

from pathlib import Path

from hrnet_keras.checkpoints.download import cache_dir
from hrnet_keras.configs import convert_command, get_preset


def missing_weights(names, cache=None):
    """[(row, command)] for each of `names` whose weights are in neither form in `cache`
    (default: the hrnet-keras cache): no NAME.weights.h5 and no published checkpoint file.
    Rows on the Hugging Face Hub come from its own cache and are not listed."""
    cache = Path(cache).expanduser().resolve() if cache else cache_dir()
    missing = []
    for name in names:
        preset = get_preset(name)
        if preset.hub_repo or (cache / preset.keras_weights).is_file():
            continue
        if not (cache / preset.filename).is_file():
            missing.append((preset.name, convert_command(preset.name, cache)))
    return missing


def describe_missing(missing, cache=None):
    """One line naming every missing row of `missing_weights` and its command."""
    cache = Path(cache).expanduser().resolve() if cache else cache_dir()
    rows = "; ".join(f"{row}: {command}" for row, command in missing)
    return f"No weights in {cache} for {len(missing)} row(s), get them with: {rows}"
