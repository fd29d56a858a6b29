"""The decode window: which shards are decoded and held for the workers, at most `size`.

A shard is opened by submitting its decode tasks (`open_shard(key)` returns their
object refs) and closed by dropping the refs, so its pixels leave the object
store (a call already running keeps what it was given). The scheduler says each
time which shards it wants, most urgent first; the window opens them in that
order, closes what nobody wants any more, and, when full, evicts an open shard
that is no longer wanted to make room. A shard opened a second time (its rows
became ready only after it was evicted) is decoded again: `decoded_twice` counts
those images.
"""


def window_size(workers, depth, decode_tasks, shard_size):
    """Shards to hold open so that every worker has `depth` calls to make and every decode
    task work (two chunks each) while they wait."""
    from hrnet_eval.decode import chunks

    return workers * depth + -(-2 * decode_tasks // len(chunks(0, shard_size)))


class DecodeWindow:
    """Open shards ({Shard: [ObjectRef]}), bounded by `size`."""

    def __init__(self, size, open_shard):
        self.size = max(1, size)
        self._open_shard = open_shard
        self.refs = {}
        self.ever_opened = set()
        self.decoded = 0  # images submitted for decoding
        self.decoded_twice = 0  # of which decoded before, in this run

    def __contains__(self, key):
        return key in self.refs

    def __len__(self):
        return len(self.refs)

    def update(self, wanted, needed):
        """Close the open shards not `needed` (a predicate) by anyone; then open the
        shards of `wanted` (keys, most urgent first, at most `size` looked at),
        evicting open shards that are not wanted where the window is full."""
        for key in [k for k in self.refs if not needed(k)]:
            del self.refs[key]
        wanted = list(wanted)[: self.size]
        keep = set(wanted)
        for key in wanted:
            if key in self.refs:
                continue
            if len(self.refs) >= self.size:
                spare = next((k for k in self.refs if k not in keep), None)
                if spare is None:
                    return
                del self.refs[spare]
            self.refs[key] = self._open_shard(key)
            self.decoded += key.size
            if key in self.ever_opened:
                self.decoded_twice += key.size
            self.ever_opened.add(key)

    def clear(self):
        self.refs.clear()
