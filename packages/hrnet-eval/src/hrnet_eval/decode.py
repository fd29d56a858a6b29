"""Decoding, apart from the model: items -> one uint8 array, run as Ray tasks on every CPU.

A shard's images are decoded in chunks, one Ray task per chunk (one process per
CPU, so decoding is not bound by one process's GIL); each chunk's array travels
through Ray's object store to the workers that score it, read there without a
copy. Chunks are concatenated on the worker in order.
"""

import numpy as np

from hrnet_eval.images import ImageError, load

IMAGE_SIZE = 224
CHUNK_SIZE = 64  # images per decode task


def decode(items, skip_corrupt=False):
    """{"images": uint8 (n, 224, 224, 3), "labels", "names", "skipped"} of `items`.

    An image that cannot be decoded raises `ImageError` naming it, or is listed
    in "skipped" as [where, why] with `skip_corrupt`.
    """
    images = np.empty((len(items), IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8")
    labels, names, skipped = [], [], []
    for item in items:
        try:
            image, label, name = load(item)
        except ImageError as exc:
            if not skip_corrupt:
                raise
            skipped.append([item.where, str(exc)])
            continue
        images[len(labels)] = image
        labels.append(label)
        names.append(name)
    return {"images": images[: len(labels)], "labels": labels, "names": names, "skipped": skipped}


def chunks(start, end, size=CHUNK_SIZE):
    """(start, end) ranges of at most `size` images covering [start, end)."""
    return [(s, min(s + size, end)) for s in range(start, end, size)]


def join(parts):
    """One decoded dict from the decoded dicts of consecutive chunks, in order."""
    if len(parts) == 1:
        return parts[0]
    return {
        "images": np.concatenate([p["images"] for p in parts]),
        **{key: [v for p in parts for v in p[key]] for key in ("labels", "names", "skipped")},
    }
