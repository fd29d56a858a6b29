"""Decoding, apart from the model: items -> one uint8 array, run as Ray tasks on every CPU.

What a decode gives depends on a row's pipeline only through its `Decoding`
(`hrnet_eval.images`: crop, resized short edge, interpolation): rows sharing one
share each decoded image; the normalisation runs on the device, in the row's
program. A shard's images are decoded in chunks, one Ray task per chunk (one process per
CPU, so decoding is not bound by one process's GIL); each chunk's array travels
through Ray's object store to the workers that score it, read there without a
copy. Chunks are concatenated on the worker in order.
"""

import numpy as np

from hrnet_eval.images import TABLE, ImageError, digest, load, read_bytes
from hrnet_eval.nodes import current_node

CHUNK_SIZE = 64  # images per decode task
KEYS = ("labels", "names", "skipped", "digests")  # lists that `join` concatenates


def decode(items, skip_corrupt=False, decoding=TABLE):
    """{"images": uint8 (n, crop, crop, 3), "labels", "names", "skipped", "digests", "node"}
    of `items`, each through `decoding`; "node": the Ray node that decoded them (None
    outside Ray).

    An image that cannot be decoded raises `ImageError` naming it, or is listed
    in "skipped" as [where, why] with `skip_corrupt`. "digests" holds one digest of
    each item's bytes in item order, skipped items included (None: unreadable).
    """
    size = decoding.crop
    images = np.empty((len(items), size, size, 3), dtype="uint8")
    labels, names, skipped, digests = [], [], [], []
    for item in items:
        digests.append(None)
        try:
            payload = read_bytes(item)
            digests[-1] = digest(payload)
            image, label, name = load(item, payload, decoding)
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
        "node": current_node(),
    }


def decode_tasks(task, options, items, skip_corrupt=False):
    """`f(shard, node=None) -> [ObjectRef]`: `task` (`decode` as a Ray remote function) with
    Ray `options`, submitted once per chunk of a `hrnet_eval.plan.Shard` of `items`, with the
    shard's decoding; on `node` (a Ray node id) while it is alive (soft affinity: the tasks
    wait there for a free CPU), else anywhere."""

    def submit(shard, node=None):
        place = {}
        if node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            place["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        placed = task.options(**options, **place)
        return [
            placed.remote(items[s:e], skip_corrupt, shard.decoding)
            for s, e in chunks(shard.start, shard.end)
        ]

    return submit


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
