"""The decode window: which shards are decoded and held for the workers.

A shard is opened by submitting its decode tasks (`open_shard(key)` returns their
object refs) and closed by dropping the refs, so its pixels leave the object
store (a call already running keeps what it was given). The scheduler says each
time which shards it wants, most urgent first; the window opens the first `size`
of them and closes what nobody needs any more. A shard still needed only by rows
that are not ready yet (rows become ready one after another while the others
compile) stays decoded while the window holds at most `hold` images; past that,
the shards wanted last go first. A shard opened a second time (its rows became
ready only after it was evicted) is decoded again: `decoded_twice` counts those
images.
"""

IMAGE_BYTES = 3  # uint8 RGB, per pixel


def window_size(workers, depth, decode_tasks, shard_size):
    """Shards to hold open so that every worker has `depth` calls to make and every decode
    task work (two chunks each) while they wait."""
    from hrnet_eval.decode import chunks

    return workers * depth + -(-2 * decode_tasks // len(chunks(0, shard_size)))


def hold_images(object_store_bytes, crop, share=0.5):
    """Decoded `crop` x `crop` images that fit in `share` of the object store."""
    return int(share * object_store_bytes) // (crop * crop * IMAGE_BYTES)


class DecodeWindow:
    """Open shards ({Shard: [ObjectRef]}): the `size` most wanted, and more while they
    need to be and the window holds at most `hold` images."""

    def __init__(self, size, open_shard, hold=0):
        self.size = max(1, size)
        self.hold = hold
        self._open_shard = open_shard
        self.refs = {}
        self.ever_opened = set()
        self.decoded = 0  # images submitted for decoding
        self.decoded_twice = 0  # of which decoded before, in this run

    def __contains__(self, key):
        return key in self.refs

    def __len__(self):
        return len(self.refs)

    @property
    def images(self):
        return sum(key.size for key in self.refs)

    def update(self, wanted, needed):
        """Close the open shards not `needed` (a predicate) by anyone; open the first
        `size` shards of `wanted` (keys, most urgent first); then, while the window holds
        more than `size` shards and `hold` images, evict the others, wanted last first."""
        for key in [k for k in self.refs if not needed(k)]:
            del self.refs[key]
        wanted = list(wanted)
        first = wanted[: self.size]
        for key in first:
            if key not in self.refs:
                self._open(key)
        rank, first = {key: i for i, key in enumerate(wanted)}, set(first)
        spares = sorted(
            (k for k in self.refs if k not in first),
            key=lambda k: rank.get(k, len(rank)),
            reverse=True,
        )
        held = self.images
        for key in spares:
            if len(self.refs) <= self.size or held <= self.hold:
                break
            del self.refs[key]
            held -= key.size

    def _open(self, key):
        self.refs[key] = self._open_shard(key)
        self.decoded += key.size
        if key in self.ever_opened:
            self.decoded_twice += key.size
        self.ever_opened.add(key)

    def clear(self):
        self.refs.clear()
