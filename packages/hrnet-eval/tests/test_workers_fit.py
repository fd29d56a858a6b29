"""Worker counts the cluster cannot hold (CPUs, GPU shares, memory) are refused before any
worker starts, with the number that fits; the default count stays within it."""

import json
import subprocess
import sys

import pytest

from hrnet_eval.cluster import ClusterError, size_workers, worker_bytes

GIB = 2**30


def test_more_cpu_workers_than_cpus_is_refused_with_the_number_that_fits():
    with pytest.raises(ClusterError) as caught:
        size_workers(1000, 0, None, nodes=[(2, 0)], units=100)
    assert str(caught.value) == (
        "--workers 1000 does not fit: the cluster's 2 CPUs hold 1 CPU worker(s) of 1 CPU "
        "(1 CPU per node stays for decoding). Give --workers 1, or --cpus-per-worker to "
        "share CPUs (e.g. 0.5)."
    )
    with pytest.raises(ClusterError, match="hold 15 CPU worker"):
        size_workers(16, 0, None, nodes=[(16, 0)], units=100)
    assert size_workers(15, 0, None, nodes=[(16, 0)], units=100).cpus_per_worker == 1.0


def test_explicit_fractional_cpus_stay_allowed():
    sizing = size_workers(2, 0, 0.5, nodes=[(2, 0)], units=9, memory=16 * GIB, rows=["hrnet-w18"])
    assert (sizing.workers, sizing.cpus_per_worker, sizing.decode_cpus) == (2, 0.5, 1.0)
    with pytest.raises(ClusterError, match="holds 4 workers of 0.5 CPUs, not 1000"):
        size_workers(1000, 0, 0.5, nodes=[(2, 0)], units=9)


def test_memory_limits_explicit_and_default_counts():
    w18 = worker_bytes(["hrnet-w18"], 0)
    assert 2.5 * GIB < w18 < 3 * GIB  # ~2.2 GiB + 6x W18's fp32 weights
    assert worker_bytes(["hrnet-w18", "hrnet-w64"], 0) > worker_bytes(["hrnet-w64"], 1)
    nodes, memory = [(32, 0)], 8 * GIB  # 0.8 x 8 GiB holds 2 W18 CPU workers
    with pytest.raises(ClusterError) as caught:
        size_workers(3, 0, 2, nodes=nodes, units=9, memory=memory, rows=["hrnet-w18"])
    assert "3 worker(s) of about 2.7 GiB each do not fit in memory" in str(caught.value)
    assert str(caught.value).endswith("holds 2. Give --workers 2.")
    # The default (one per 8 CPUs: 4) is cut to what memory holds.
    assert (
        size_workers(None, 0, None, nodes=nodes, units=9, memory=memory, rows=["hrnet-w18"]).workers
        == 2
    )
    with pytest.raises(ClusterError, match="Use a node with more memory"):
        size_workers(None, 0, None, nodes=nodes, units=9, memory=2 * GIB, rows=["hrnet-w64"])
    # GPU workers: 1000 shares of one GPU pass the GPU count, not the host's memory.
    with pytest.raises(ClusterError, match="1000 worker.* do not fit in memory"):
        size_workers(1000, 0.001, None, nodes=[(16, 1)], units=2000, memory=100 * GIB)


SCRIPT = """
import json, os, sys
from hrnet_eval import cluster
os.environ.update(cluster.local_cluster_env())
import ray
ray.init(address="local", num_cpus=2, num_gpus=0, _memory=int(sys.argv[1]),
         include_dashboard=False, _node_ip_address="127.0.0.1")
nodes, memory = cluster.node_resources(), cluster.node_memory()
out = {"nodes": nodes, "memory": memory}
for workers in (None, 1, 1000):
    try:
        s = cluster.size_workers(workers, None, None, nodes=nodes, units=100, memory=memory,
                                 rows=["hrnet-w18"])
        out[str(workers)] = [s.workers, s.cpus_per_worker]
    except cluster.ClusterError as exc:
        out[str(workers)] = str(exc)
try:
    cluster.size_workers(2, 0, 0.5, nodes=nodes, units=100, memory=memory, rows=["hrnet-w18"])
except cluster.ClusterError as exc:
    out["memory"] = str(exc)
ray.shutdown()
print(json.dumps(out))
"""


def test_sized_from_rays_logical_resources():
    from ray_head import python_env

    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(4 * GIB)],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["nodes"] == [[2.0, 0.0]]
    assert got["None"] == [1, 1.0] and got["1"] == [1, 1.0]
    assert got["memory"].startswith("2 worker(s) of about 2.7 GiB each do not fit in memory")
    assert got["1000"].startswith("--workers 1000 does not fit: the cluster's 2 CPUs hold 1")
