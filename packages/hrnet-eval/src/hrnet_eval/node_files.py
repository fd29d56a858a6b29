"""The driver's files on a worker's node: a row's weights file, without a shared disk.

No node is assumed to see the driver's disk. A worker, or its build task, asks
`local_weights` for a row's file: where this node reads the driver's path with the
sha256 the driver recorded (the driver's own node, a shared disk, the same files copied
there), that path; otherwise a Ray task on the driver's node (`source_node`) reads the
file and returns its bytes through Ray's object store; they are checked against the
sha256 on arrival and kept in this node's folder (`<folder>/files/<sha256>.<name>`,
the worker's `--compile-cache`), where the next run of that node finds them.
"""

import hashlib
import os
import tempfile
import threading
from pathlib import Path

import numpy as np
from hrnet_keras.checkpoints.checksums import file_sha256

from hrnet_eval.errors import WorkerError

FILES = "files"  # the folder of fetched files inside a node's cache
_checked = {}  # (path, size, mtime_ns) -> sha256, what this process has hashed
_lock = threading.Lock()  # one fetch at a time per process: a row's file is fetched once


def sha256_of(path):
    """The sha256 of file `path` (None: not a readable file), hashed once per process while
    its size and modification time stay."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    seen = (str(path), stat.st_size, stat.st_mtime_ns)
    if seen not in _checked:
        try:
            _checked[seen] = file_sha256(path)
        except OSError:
            return None
    return _checked[seen]


def read_file(path, sha256):
    """The bytes of `path` (a uint8 array: Ray passes it without a copy), where its sha256 is
    `sha256`; run as a Ray task on the node whose disk holds it."""
    data = np.fromfile(path, dtype=np.uint8)
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise WorkerError(
            f"{path} changed on the driver's node since the job started (sha256 {found[:12]}..., "
            f"not {sha256[:12]}...): rerun the job."
        )
    return data


def local_weights(spec, folder, source_node):
    """A path on this node to row `spec`'s weights file with the bytes the driver checked
    (`spec.key`, "sha256:..."): the driver's path where this node reads those bytes there,
    else a copy in `folder` (fetched from `source_node`, the driver's node, the first time).
    None for seeded rows (no file)."""
    if spec.weights is None:
        return None
    want = spec.key.removeprefix("sha256:")
    if sha256_of(spec.weights) == want:
        return spec.weights
    kept = Path(folder) / FILES / f"{want}.{Path(spec.weights).name}"
    with _lock:
        if sha256_of(kept) == want:
            return str(kept)
        if source_node is None:
            raise WorkerError(
                f"Weights file {spec.weights} is not on this worker's node with the bytes the "
                "driver checked, and the driver's node is unknown: start the job through Ray."
            )
        data = _fetch(spec.weights, want, source_node)
        found = hashlib.sha256(data).hexdigest()
        if found != want:
            raise WorkerError(
                f"Weights file {spec.weights} arrived from the driver's node with sha256 "
                f"{found[:12]}..., not {want[:12]}...: rerun the job."
            )
        kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=kept.parent, delete=False) as f:
            f.write(memoryview(data))
        os.replace(f.name, kept)  # whole or absent: runs sharing the folder never read half
    return str(kept)


def _fetch(path, sha256, node):
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(read_file).options(
        num_cpus=0,
        max_retries=1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
    )
    try:
        return ray.get(task.remote(path, sha256))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, WorkerError):
            raise WorkerError(str(exc.cause)) from None
        raise WorkerError(f"Weights file {path} could not be read on the driver's node: {exc}")
