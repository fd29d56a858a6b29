"""Resume on content: a stored shard is reused only if its images' bytes are those it scored.

The decode tasks record a digest of each item's bytes (`decode.decode`'s "digests", kept in
the shard's record). Before a resumed run trusts the shards that passed the cheap key test
(names, sizes, modification times), `stale` hashes their items again in Ray tasks, every
byte read once, and names the shards whose bytes differ, to be scored again
(`hrnet_eval.plan.Plan.verify`).
"""

import ray

from hrnet_eval.images import ImageError, digest, read_bytes

CHANGED = "images' bytes changed"
UNRECORDED = "no digests of their images' bytes (an older run)"
ITEMS_PER_TASK = 256  # items hashed by one Ray task (whole files: one task per container)


def hash_items(items):
    """The digest of each item's bytes (None where they cannot be read), in order."""
    out = []
    for item in items:
        try:
            out.append(digest(read_bytes(item)))
        except ImageError:
            out.append(None)
    return out


def batches(items, size=ITEMS_PER_TASK):
    """`items` cut into lists of about `size`, never splitting one file's items."""
    out, batch, source = [], [], None
    for item in items:
        if batch and len(batch) >= size and item.source != source:
            out.append(batch)
            batch = []
        batch.append(item)
        source = item.source
    if batch:
        out.append(batch)
    return out


def fresh_digests(items):
    """The digest of each of `items`, hashed in parallel Ray tasks (order kept), in the
    worker processes the decode tasks then use (no runtime_env)."""
    task = ray.remote(hash_items).options(num_cpus=1)
    parts = ray.get([task.remote(batch) for batch in batches(items)])
    return [d for part in parts for d in part]


def stale(items, done, *, hasher=fresh_digests):
    """The stored records of `done` ({row: records}) whose images' bytes differ from
    `items` (the data set's items) or that recorded no digests: ({(row, start, end): why},
    images hashed)."""
    ranges = set()
    for records in done.values():
        for record in records:
            recorded = record.get("digests")
            if isinstance(recorded, list) and len(recorded) == record["end"] - record["start"]:
                ranges.add((record["start"], record["end"]))
    ranges = sorted(ranges)
    wanted = [item for start, end in ranges for item in items[start:end]]
    digests, at = hasher(wanted) if wanted else [], 0
    current = {}
    for start, end in ranges:
        current[(start, end)] = digests[at : at + end - start]
        at += end - start
    found = {}
    for row, records in done.items():
        for record in records:
            fresh = current.get((record["start"], record["end"]))
            if fresh is None or record["digests"] != fresh:
                found[row, record["start"], record["end"]] = (
                    CHANGED if fresh is not None else UNRECORDED
                )
    return found, len(wanted)
