"""Record indexes of containers in object storage (a tar's members, a TFRecord file's
records), read by one Ray task per object and kept on the driver's disk.

An index is read by streaming its object once (sequential reads, no per-record
requests) in a Ray task, which builds its own filesystem from the URI. Indexes are
kept in $XDG_CACHE_HOME/hrnet-eval/data-index (default ~/.cache/...), one JSON file per
object, named by a digest of its URI, size and modification time: a replaced object is
indexed again.
"""

import hashlib
import json
import os
import sys
from pathlib import Path

from hrnet_keras.files import atomic_write


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base, "hrnet-eval", "data-index")


def _entry(uri, kind, stamp):
    key = hashlib.sha1(f"{kind}\t{uri}\t{stamp}".encode()).hexdigest()
    return cache_dir() / f"{key}.json"


def read_index(uri, kind, size):
    """{"index": [...]} of object `uri` (kind "tar": [name, offset, size] per image member;
    "tfrecord": [offset, length] per record), or {"error": message}. Runs as a Ray task."""
    from hrnet_eval import data, storage

    try:
        with storage.open_stream(uri) as stream:
            if kind == "tar":
                members = data.tar_members(uri, stream)
            else:
                members = data.tfrecord_index(uri, stream, size)
    except data.DataError as exc:
        return {"error": str(exc)}
    except OSError as exc:
        return {"error": f"Cannot read {uri}: {exc}"}
    return {"index": [list(m) for m in members]}


def indexes(objects, connect=None):
    """The index of each of `objects` ([(uri, kind, stamp)]), from the cache or else read
    by one Ray task per object (`connect()` first when this process has not joined a
    cluster); raises the first object's `DataError`."""
    from hrnet_eval.data import DataError

    out, missing = [], []
    for i, (uri, kind, stamp) in enumerate(objects):
        try:
            out.append(json.loads(_entry(uri, kind, stamp).read_text()))
        except (OSError, ValueError):
            out.append(None)
            missing.append(i)
    if missing:
        ray = sys.modules.get("ray")
        if connect is not None and not (ray and ray.is_initialized()):
            connect()
        import ray

        task = ray.remote(read_index).options(num_cpus=1)
        refs = []
        for i in missing:
            uri, kind, stamp = objects[i]
            refs.append(task.remote(uri, kind, int(stamp.split("\t")[0])))
        for i, result in zip(missing, ray.get(refs)):
            if "error" in result:
                raise DataError(result["error"])
            out[i] = result["index"]
            uri, kind, stamp = objects[i]
            try:
                with atomic_write(_entry(uri, kind, stamp)) as tmp:
                    Path(tmp).write_text(json.dumps(out[i]))
            except OSError:  # no cache: indexed again next time
                pass
    return out
