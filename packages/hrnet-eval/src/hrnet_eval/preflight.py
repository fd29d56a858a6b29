"""Flags checked before any work: what `python -m hrnet_eval` refuses before data, weights
or a cluster are touched, each with one line naming the flag and what to do."""

import os
from pathlib import Path

from hrnet_keras.configs import get_preset

from hrnet_eval.errors import EvalError
from hrnet_eval.permissions import check_private

# No device holds a batch whose float32 input images alone take more than this.
MAX_BATCH_BYTES = 2**40


class FlagError(EvalError, ValueError):
    """A flag whose value cannot work; the message names it."""


def batch_size_problem(batch_size, models):
    """Why `--batch-size` cannot work for `models` whatever the cluster (its float32 input
    images alone past `MAX_BATCH_BYTES`), or None."""
    crop = max((get_preset(m).pipeline.crop for m in models), default=224)
    image_bytes = crop * crop * 3 * 4
    largest = MAX_BATCH_BYTES // image_bytes
    if batch_size <= largest:
        return None
    return (
        f"--batch-size {batch_size}: its {crop} x {crop} images alone take "
        f"{batch_size * image_bytes / 2**40:,.0f} TiB as float32, more than any device "
        f"holds; give at most {largest:,} (default 32; a worker refuses a batch its memory "
        "does not fit, naming the largest that does)"
    )


def check_folder_flag(path, flag):
    """Refuse folder flag `path` when it, or a folder above it, is a file (before anything
    is created or a cluster starts)."""
    path = Path(path).expanduser()
    for place in (path, *path.parents):
        if os.path.lexists(place) and not place.is_dir():
            where = "is a file" if place == path else f"is below {place}, a file"
            raise FlagError(f"{flag} {path} {where}, not a folder: give a folder.")


def check(config):
    """Refuse `config`'s folder flags that cannot work or that another user can write
    (`permissions.check_private`); nothing is created."""
    if config.compile_cache:
        check_folder_flag(config.compile_cache, "--compile-cache")
        check_private(Path(config.compile_cache).expanduser(), "--compile-cache")
    output = Path(config.output).expanduser()
    if os.path.isdir(output) or not os.path.lexists(output):
        check_private(output, "--output")
