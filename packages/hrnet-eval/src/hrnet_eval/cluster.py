"""Joining Ray, sizing the workers, and their process environment."""

import logging
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


def node_resources():
    """(CPUs, GPUs) of each alive node."""
    import ray

    return [
        (float(node["Resources"].get("CPU", 0)), float(node["Resources"].get("GPU", 0)))
        for node in ray.nodes()
        if node.get("Alive")
    ]


CPUS_PER_CPU_WORKER = 8  # default share of a CPU-only worker


def size_workers(workers, gpus_per_worker, cpus_per_worker, *, nodes, units):
    """(workers, gpus_per_worker, cpus_per_worker), defaults filled in from `nodes`
    ((CPUs, GPUs) per node) and checked against what the nodes can hold.

    GPU workers: one per `gpus_per_worker` share of each node's GPUs (default share
    1 when the cluster has GPUs, else CPU workers). CPU workers: one per 8 CPUs. The
    CPUs of the nodes used are split evenly between the workers (fractions below 1).
    """
    total_gpus = sum(g for _, g in nodes)
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if total_gpus >= 1 else 0.0
    if gpus_per_worker > 0 and total_gpus == 0:
        raise ClusterError("The Ray cluster has no GPUs: run CPU workers with --gpus-per-worker 0.")
    if gpus_per_worker > 0:
        slots = [(c, int(g / gpus_per_worker + 1e-9)) for c, g in nodes]
    else:
        slots = [(c, max(1, int(c // CPUS_PER_CPU_WORKER))) for c, _ in nodes if c > 0]
    slots = [(c, n) for c, n in slots if n > 0]
    if not slots:
        raise ClusterError(
            f"No node has {gpus_per_worker:g} GPUs free for a worker: " "lower --gpus-per-worker."
        )
    if cpus_per_worker is None:
        share = sum(c for c, _ in slots) / workers if workers else min(c / n for c, n in slots)
        cpus_per_worker = float(int(share)) if share >= 1 else share
    if gpus_per_worker == 0:  # CPU workers: as many as the CPUs hold
        slots = [(c, int(c / cpus_per_worker + 1e-9)) for c, _ in slots]
    else:  # GPU workers need their CPUs on the same node
        slots = [(c, min(n, int(c / cpus_per_worker + 1e-9))) for c, n in slots]
    capacity = sum(n for _, n in slots)
    if workers is None:
        workers = capacity
    if capacity < 1 or workers > capacity:
        kind = f"{gpus_per_worker:g} GPUs and " if gpus_per_worker else ""
        raise ClusterError(
            f"The cluster holds {capacity} workers of {kind}{cpus_per_worker:g} CPUs, not "
            f"{workers}: lower --workers, --gpus-per-worker or --cpus-per-worker."
        )
    return max(1, min(workers, units)), float(gpus_per_worker), float(cpus_per_worker)


def worker_env(backend, gpus_per_worker, compile_cache=None, cpus_per_worker=None):
    """Environment variables of a worker process.

    CPU workers of torch and TensorFlow compute on as many threads as they have
    CPUs (at least one), so workers sharing a node do not oversubscribe it. JAX
    has no thread-count setting for the CPU: its workers use every core.
    """
    env = {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if gpus_per_worker == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
        if cpus_per_worker is not None:
            threads = str(max(1, int(cpus_per_worker)))
            env.update(
                OMP_NUM_THREADS=threads,
                TF_NUM_INTRAOP_THREADS=threads,
                TF_NUM_INTEROP_THREADS=threads,
            )
    elif gpus_per_worker < 1:
        # Several workers share a GPU: each takes its part, not the framework default.
        env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{0.9 * gpus_per_worker:.3f}"
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
    if compile_cache and backend == "jax":
        env["JAX_COMPILATION_CACHE_DIR"] = str(compile_cache)
    return env
