"""How many workers, with which GPU and CPU shares, a cluster of given nodes holds."""

import pytest

from hrnet_eval.cluster import ClusterError, size_workers, worker_env


def sized(nodes, workers=None, gpus=None, cpus=None, units=100):
    return size_workers(workers, gpus, cpus, nodes=nodes, units=units)


def test_defaults_follow_the_nodes():
    assert sized([(4, 2)]) == (2, 1.0, 2.0)  # one worker per GPU, CPUs split
    assert sized([(2, 0)]) == (1, 0.0, 2.0)  # no GPU: a CPU worker
    assert sized([(32, 0)]) == (4, 0.0, 8.0)  # CPU workers: one per 8 CPUs
    # GPU workers only where the GPUs are, with that node's CPUs.
    assert sized([(64, 0), (8, 1), (96, 8)]) == (9, 1.0, 8.0)
    assert sized([(4, 2)], units=1) == (1, 1.0, 2.0)  # never more workers than units


def test_fractions_and_explicit_counts():
    assert sized([(4, 2)], workers=3, gpus=0.5) == (3, 0.5, 1.0)
    assert sized([(4, 2)], gpus=0.5) == (4, 0.5, 1.0)
    workers, gpus, cpus = sized([(2, 0)], workers=3, gpus=0)
    assert (workers, gpus) == (3, 0.0) and cpus == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "nodes, options, message",
    [
        ([(4, 0)], {"gpus": 1}, "no GPUs: run CPU workers with --gpus-per-worker 0"),
        ([(4, 2)], {"workers": 5, "gpus": 1}, "holds 2 workers"),
        ([(4, 1)], {"gpus": 2}, "No node has 2 GPUs free"),
        ([(4, 2)], {"workers": 2, "cpus": 3}, "holds 1 workers"),
    ],
)
def test_what_does_not_fit_fails(nodes, options, message):
    with pytest.raises(ClusterError, match=message):
        sized(nodes, **options)


def test_worker_environment():
    assert worker_env("jax", 0) == {
        "KERAS_BACKEND": "jax",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "JAX_PLATFORMS": "cpu",
    }
    shared = worker_env("jax", 0.5, "/cache")
    assert shared["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.450"
    assert shared["JAX_COMPILATION_CACHE_DIR"] == "/cache"
    assert "CUDA_VISIBLE_DEVICES" not in worker_env("torch", 1, "/cache")
    assert "JAX_COMPILATION_CACHE_DIR" not in worker_env("torch", 1, "/cache")


@pytest.mark.parametrize("cpus, threads", [(1, "1"), (0.5, "1"), (4, "4")])
def test_cpu_workers_compute_on_their_cpus(cpus, threads):
    env = worker_env("torch", 0, None, cpus)
    assert env["OMP_NUM_THREADS"] == env["TF_NUM_INTRAOP_THREADS"] == threads
    assert "OMP_NUM_THREADS" not in worker_env("torch", 1, None, cpus)  # GPU workers: untouched
