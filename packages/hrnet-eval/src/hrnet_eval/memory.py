"""Whether one batch of a row fits the memory of the device that scores it.

A row's folded program holds its float32 weights and, per image, the activations XLA
keeps alive at once. XLA's `memory_analysis` of the folded program on the CPU at 224 x 224
gave 17.8 MiB per image for W18 (21.3 M parameters) and 56.4 MiB for W64 (128 M): about
10 MiB plus 0.36 MiB per million parameters, scaled here by the crop's area. The estimate
is used to refuse a batch that cannot fit, before anything is built or compiled for it.
"""

import psutil

MIB = 2**20
PER_IMAGE = 10 * MIB  # at 224 x 224, for any row
PER_IMAGE_PER_PARAM = 0.36 * MIB / 1e6  # and per parameter of the row


def batch_bytes(preset, batch_size):
    """(bytes a batch of `batch_size` needs under `preset`'s row, bytes per image)."""
    area = (preset.pipeline.crop / 224) ** 2
    per_image = (PER_IMAGE + PER_IMAGE_PER_PARAM * preset.params) * area
    return 4 * preset.params + batch_size * per_image, per_image


def free_bytes(jax_device=None):
    """(bytes free, where): a JAX accelerator's own limit less what it holds, else the host's
    available memory (a CPU worker's device)."""
    stats = jax_device.memory_stats() if jax_device is not None else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0), str(jax_device)
    return psutil.virtual_memory().available, "this node's host memory"


def batch_problem(name, preset, batch_size, free, where):
    """Why `--batch-size batch_size` cannot fit row `name` in `free` bytes of `where`, naming
    the largest batch that fits; None when it fits."""
    need, per_image = batch_bytes(preset, batch_size)
    if need <= free:
        return None
    largest = int((free - 4 * preset.params) // per_image)
    fix = f"give --batch-size {largest} or less" if largest >= 1 else "not one image fits"
    return (
        f"--batch-size {batch_size} does not fit {name} in {where}: about "
        f"{need / 2**30:.1f} GiB needed, {free / 2**30:.1f} GiB free; {fix}"
    )
