"""How many workers, with which GPU and CPU shares, a cluster of given nodes holds."""

import pytest

from hrnet_eval.cluster import ClusterError, size_workers, worker_env


def sized(nodes, workers=None, gpus=None, cpus=None, units=100):
    s = size_workers(workers, gpus, cpus, nodes=nodes, units=units)
    return s.workers, s.gpus_per_worker, s.cpus_per_worker, s.decode_tasks


def test_defaults_follow_the_nodes():
    # (workers, GPU share, CPUs each, decode tasks at a time)
    assert sized([(4, 2)]) == (2, 1.0, 1.0, 2)  # one worker per GPU, the other CPUs decode
    assert sized([(16, 1)]) == (1, 1.0, 1.0, 15)
    assert sized([(2, 0)]) == (1, 0.0, 1.0, 1)  # no GPU: a CPU worker, one CPU decodes
    assert sized([(32, 0)]) == (4, 0.0, 7.0, 4)  # CPU workers: one per 8 CPUs
    # GPU workers only where the GPUs are; decoding anywhere.
    assert sized([(64, 0), (8, 1), (96, 8)]) == (9, 1.0, 1.0, 159)
    assert sized([(4, 2)], units=1) == (1, 1.0, 1.0, 3)  # never more workers than units
    assert sized([(1, 0)]) == (1, 0.0, 0.5, 1)  # a 1-CPU machine: half each
    assert size_workers(None, None, None, nodes=[(1, 0)], units=9).decode_task_cpus == 0.5


def test_fractions_and_explicit_counts():
    assert sized([(4, 2)], workers=3, gpus=0.5) == (3, 0.5, 0.75, 1)
    assert sized([(4, 2)], gpus=0.5) == (4, 0.5, 0.75, 1)
    assert sized([(2, 0)], workers=2, gpus=0, cpus=0.5) == (2, 0.0, 0.5, 1)  # shares asked for
    assert size_workers(None, 0, None, nodes=[(16, 0)], units=9).threads == 8
    assert size_workers(1, 0, 0.75, nodes=[(2, 0)], units=9).threads == 1  # as asked
    assert size_workers(1, 0, 3, nodes=[(8, 0)], units=9).threads == 3


@pytest.mark.parametrize(
    "nodes, options, message",
    [
        ([(4, 0)], {"gpus": 1}, "no GPUs: run CPU workers with --gpus-per-worker 0"),
        ([(4, 2)], {"workers": 5, "gpus": 1}, "holds 2 workers"),
        ([(4, 1)], {"gpus": 2}, "No node has 2 GPUs free"),
        ([(4, 2)], {"workers": 2, "cpus": 3}, "holds 1 workers"),
        ([(4, 2)], {"workers": 2, "cpus": 2}, "leave none of the cluster's 4 CPUs to decode"),
    ],
)
def test_what_does_not_fit_fails(nodes, options, message):
    with pytest.raises(ClusterError, match=message):
        sized(nodes, **options)


def test_worker_environment():
    assert worker_env("jax", 0) == {
        "KERAS_BACKEND": "jax",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        "CUDA_VISIBLE_DEVICES": "",
        "JAX_PLATFORMS": "cpu",
    }
    assert "TF_ENABLE_ONEDNN_OPTS" not in worker_env("tensorflow", 0)
    shared = worker_env("jax", 0.5, "/cache")
    assert shared["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450"
    assert shared["JAX_COMPILATION_CACHE_DIR"] == "/cache"
    assert "CUDA_VISIBLE_DEVICES" not in worker_env("torch", 1, "/cache")
    assert "JAX_COMPILATION_CACHE_DIR" not in worker_env("torch", 1, "/cache")


@pytest.mark.parametrize("threads, expected", [(1, "1"), (0, "1"), (4, "4")])
def test_cpu_workers_compute_on_their_threads(threads, expected):
    env = worker_env("torch", 0, None, threads)
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == expected
    assert "OMP_NUM_THREADS" not in worker_env("torch", 1, None, threads)  # GPU workers: untouched


def test_rows_per_worker():
    from hrnet_keras.configs import get_preset

    from hrnet_eval.job import rows_per_worker

    rows = [get_preset(m) for m in ("hrnet-w18", "hrnet-w64", "hrnet-w30")]
    cpu = size_workers(None, 0, None, nodes=[(2, 0)], units=9)
    gpu = size_workers(None, None, None, nodes=[(16, 1)], units=9)
    assert rows_per_worker(rows, gpu, 6 * 2**30) == 3  # a GPU worker holds every row
    assert rows_per_worker(rows, cpu, 64 * 2**30) == 3
    # 6 GiB: W18 + W30 would fit together, but a group may hold W64: one row per worker.
    assert rows_per_worker(rows, cpu, 6 * 2**30) == 1
    assert rows_per_worker(rows, cpu, 1, given=2) == 2


def test_the_local_clusters_environment_is_set_before_rays_import():
    """Ray reads its auth settings when imported: `prepare` (which `python -m hrnet_eval`
    calls before the job's modules import Ray) sets the local cluster's token first; a
    process that imported Ray before is refused with one line."""
    import subprocess
    import sys

    code = (
        "import ray\nfrom hrnet_eval import cluster\n"
        "try:\n    cluster.connect(None)\nexcept cluster.ClusterError as e:\n    print(e)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == (
        "Ray was imported before the local cluster's token was set: start the local cluster "
        "from a fresh process (python -m hrnet_eval)."
    ), run.stderr
    code = (
        "import os, sys\nfrom hrnet_eval import cluster\ncluster.prepare()\n"
        "import hrnet_eval.job\ncluster.prepare()\n"  # once set, Ray's import does not undo it
        "print(os.environ['RAY_AUTH_MODE'], len(os.environ['RAY_AUTH_TOKEN']), 'ray' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.stdout.strip() == "token 64 True", run.stderr


def test_build_tasks_fit_beside_the_workers_of_their_node():
    """A worker's build task runs on the worker's node: it asks for at most the CPUs the
    workers leave there, or a 1-CPU node whose worker holds half of it never builds."""
    assert size_workers(None, None, None, nodes=[(1, 1)], units=9).builder_cpus == 0.5
    assert size_workers(None, None, None, nodes=[(4, 2)], units=9).builder_cpus == 1.0
    assert size_workers(None, None, None, nodes=[(1, 0)], units=9).builder_cpus == 0.5
    assert size_workers(None, 0.5, None, nodes=[(1, 2), (8, 4)], units=9).builder_cpus == 0.5
