"""Joining Ray, sizing the workers, and their process environment."""

import logging
import math
import os
import signal

LOCAL_ENV = {
    # A private local cluster: no token to manage, nothing reported home, and
    # reachable on the loopback address only (Ray otherwise resolves the node
    # to the outside interface, even for 127.0.0.1).
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


class ClusterError(RuntimeError):
    """The cluster cannot host the workers asked for."""


def stop_on_sigterm():
    """Turn SIGTERM (`ray job stop`, `kill`) into KeyboardInterrupt, so the driver stops
    cleanly; Ray's own handler, installed by `ray.init`, only logs a stack and dies."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def connect(address=None, *, num_cpus=None):
    """Join the cluster at `address` / $RAY_ADDRESS (as under `ray job submit`),
    else start a private local one. Returns a short description."""
    import ray

    # Errors of shards the driver stopped waiting for are not news.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        description = f"joined the Ray cluster at {address}"
    else:
        for key, value in LOCAL_ENV.items():
            os.environ.setdefault(key, value)
        ray.init(
            address="local",
            include_dashboard=False,
            num_cpus=num_cpus,
            logging_level=logging.WARNING,
            log_to_driver=True,
        )
        description = "started a local Ray cluster (no RAY_ADDRESS given)"
    stop_on_sigterm()
    return description


def cluster_totals():
    """(CPUs, GPUs) of the whole cluster."""
    import ray

    resources = ray.cluster_resources()
    return float(resources.get("CPU", 0)), float(resources.get("GPU", 0))


def size_workers(workers, gpus_per_worker, cpus_per_worker, *, total_cpus, total_gpus, units):
    """(workers, gpus_per_worker, cpus_per_worker) filled in and checked against the cluster.

    GPUs: one worker per `gpus_per_worker` share (default 1 when the cluster has
    GPUs, else CPU workers). CPUs: the cluster's CPUs split evenly.
    """
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if total_gpus >= 1 else 0.0
    if gpus_per_worker < 0:
        raise ClusterError(f"--gpus-per-worker must be 0 or more, got {gpus_per_worker}.")
    if gpus_per_worker > 0 and total_gpus == 0:
        raise ClusterError(
            "The Ray cluster has no GPUs: run CPU workers with --gpus-per-worker 0."
        )
    if workers is None:
        if gpus_per_worker > 0:
            workers = int(math.floor(total_gpus / gpus_per_worker + 1e-9))
        else:
            workers = max(1, int(total_cpus // 8))
    workers = max(1, min(workers, units))
    if gpus_per_worker * workers > total_gpus + 1e-9:
        raise ClusterError(
            f"{workers} workers x {gpus_per_worker:g} GPUs need {workers * gpus_per_worker:g} "
            f"GPUs; the cluster has {total_gpus:g}. Lower --workers or --gpus-per-worker."
        )
    if cpus_per_worker is None:
        cpus_per_worker = max(1, int(total_cpus // workers)) if total_cpus >= workers else total_cpus / workers
    if cpus_per_worker <= 0 or cpus_per_worker * workers > total_cpus + 1e-9:
        raise ClusterError(
            f"{workers} workers x {cpus_per_worker:g} CPUs do not fit the cluster's "
            f"{total_cpus:g} CPUs. Lower --workers or --cpus-per-worker."
        )
    return workers, float(gpus_per_worker), float(cpus_per_worker)


def worker_env(backend, gpus_per_worker, compile_cache=None):
    """Environment variables of a worker process."""
    env = {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if gpus_per_worker == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
    elif gpus_per_worker < 1:
        # Several workers share a GPU: each takes its part, not the framework default.
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * gpus_per_worker:.3f}"
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    if compile_cache and backend == "jax":
        env["JAX_COMPILATION_CACHE_DIR"] = str(compile_cache)
    return env
