"""Shard records as a worker writes them: counts that agree with their own classes and labels."""

from hrnet_eval.store import recount


def scored(labels, top5_classes, names=None, skipped=(), digests=None, seconds=0.5):
    """The fields `ScoredShard.record` gives for one row: counts recomputed from
    `top5_classes` against `labels`."""
    top1, top5 = recount(top5_classes, labels)
    record = {
        "images": len(labels),
        "top1_hits": top1,
        "top5_hits": top5,
        "seconds": seconds,
        "top5_classes": [list(t) for t in top5_classes],
        "labels": list(labels),
        "names": list(names) if names is not None else [f"img{i}" for i in range(len(labels))],
        "skipped": list(skipped),
    }
    if digests is not None:
        record["digests"] = list(digests)
    return record
