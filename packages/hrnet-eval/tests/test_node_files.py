"""A weights file a node cannot read comes from the driver's node through Ray, checked."""

import hashlib
from pathlib import Path

import numpy as np
import pytest

from hrnet_eval import node_files
from hrnet_eval.errors import WorkerError
from hrnet_eval.spec import ModelSpec


@pytest.fixture(scope="module")
def ray_one_node():
    import ray

    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()


def test_a_file_this_node_lacks_is_fetched_checked_and_kept(ray_one_node, tmp_path, monkeypatch):
    source = tmp_path / "driver" / "hrnet-w18.weights.h5"
    source.parent.mkdir()
    data = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
    source.write_bytes(data)
    sha256 = hashlib.sha256(data).hexdigest()
    spec = ModelSpec("hrnet-w18", str(source), "sha256:" + sha256)
    node = ray_one_node.get_runtime_context().get_node_id()
    cache = tmp_path / "cache"

    assert node_files.local_weights(spec, cache, node) == str(source)  # readable here: as is

    hashed = node_files.sha256_of  # this process now plays a node without the driver's disk
    monkeypatch.setattr(
        node_files, "sha256_of", lambda path: None if path == str(source) else hashed(path)
    )
    kept = Path(node_files.local_weights(spec, cache, node))
    assert kept.parent == cache / "files" and kept.read_bytes() == data
    assert oct(kept.parent.stat().st_mode & 0o777) == "0o700"
    # the next run of this node finds its copy: no driver's node needed
    assert node_files.local_weights(spec, cache, None) == str(kept)

    kept.unlink()  # the driver's file changed since the job checked it: refused, named
    source.write_bytes(data[::-1])
    with pytest.raises(WorkerError, match=f"{source} changed on the driver's node"):
        node_files.local_weights(spec, cache, node)
    with pytest.raises(WorkerError, match="driver's node is unknown"):
        node_files.local_weights(spec, cache, None)
