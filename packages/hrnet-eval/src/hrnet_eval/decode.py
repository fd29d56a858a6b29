"""Decoding, apart from the model: items -> one uint8 array, run as Ray tasks on every CPU.

A shard's images are decoded in chunks, one Ray task per chunk (one process per
CPU, so decoding is not bound by one process's GIL); each chunk's array travels
through Ray's object store to the workers that score it, read there without a
copy. Chunks are concatenated on the worker in order.
"""

import numpy as np
from hrnet_keras.configs import TEST_PIPELINE

from hrnet_eval.images import ImageError, digest, load, read_bytes

CHUNK_SIZE = 64  # images per decode task
KEYS = ("labels", "names", "skipped", "digests")  # lists that `join` concatenates


def decode(items, skip_corrupt=False):
    """{"images": uint8 (n, 224, 224, 3), "labels", "names", "skipped", "digests"} of `items`.

    An image that cannot be decoded raises `ImageError` naming it, or is listed
    in "skipped" as [where, why] with `skip_corrupt`. "digests" holds one digest of
    each item's bytes in item order, skipped items included (None: unreadable).
    """
    size = TEST_PIPELINE.crop
    images = np.empty((len(items), size, size, 3), dtype="uint8")
    labels, names, skipped, digests = [], [], [], []
    for item in items:
        digests.append(None)
        try:
            payload = read_bytes(item)
            digests[-1] = digest(payload)
            image, label, name = load(item, payload)
        except ImageError as exc:
            if not skip_corrupt:
                raise
            skipped.append([item.where, str(exc)])
            continue
        images[len(labels)] = image
        labels.append(label)
        names.append(name)
    return {
        "images": images[: len(labels)],
        "labels": labels,
        "names": names,
        "skipped": skipped,
        "digests": digests,
    }


def chunks(start, end, size=CHUNK_SIZE):
    """(start, end) ranges of at most `size` images covering [start, end)."""
    return [(s, min(s + size, end)) for s in range(start, end, size)]


def join(parts):
    """One decoded dict from the decoded dicts of consecutive chunks, in order."""
    if len(parts) == 1:
        return parts[0]
    return {
        "images": np.concatenate([p["images"] for p in parts]),
        **{key: [v for p in parts for v in p[key]] for key in KEYS},
    }
