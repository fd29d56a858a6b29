"""Joining Ray, sizing the workers, and their process environment."""

import dataclasses
import logging
import os
import secrets
import signal
import sys

from hrnet_keras.configs import get_preset

from hrnet_eval.errors import EvalError, WorkerError


def local_cluster_env():
    """Environment of a private local cluster: token auth on with a fresh per-run token
    (never written to disk), nothing reported home, every Ray process on 127.0.0.1.

    Ray starts its processes with this environment, so they all hold the token and
    every RPC without it is refused. `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` together
    with the node address 127.0.0.1 keeps Ray's listeners on loopback.
    """
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }


class ClusterError(EvalError, RuntimeError):
    """The cluster cannot host the workers asked for."""


FRAMEWORKS = ("jax", "keras", "tensorflow", "torch")  # read the environment when imported


def apply_env(env):
    """Set `env` in this process's environment (`worker_env`, `builder_env`), as a worker
    or builder does first; raises `WorkerError` where a framework that reads it was
    imported before with other values."""
    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    imported = [m for m in FRAMEWORKS if m in sys.modules]
    if changed and imported:
        raise WorkerError(
            f"Worker pid {os.getpid()} imported {', '.join(imported)} before its environment "
            f"({', '.join(f'{k}={v}' for k, v in changed.items())}) was set: start the worker "
            "in a fresh process."
        )
    os.environ.update(changed)


def stop_on_sigterm():
    """Turn SIGTERM (`ray job stop`, `kill`) into KeyboardInterrupt, so the driver stops
    cleanly; Ray's own handler, installed by `ray.init`, only logs a stack and dies."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def cluster_address(address=None):
    """The cluster a job joins: `address`, else $RAY_ADDRESS; None: a private local one."""
    return address or os.environ.get("RAY_ADDRESS") or None


_LOCAL_ENV_SET = []  # holds True once `prepare` set a local cluster's environment


def prepare(address=None):
    """Set this process's environment for the cluster it will join, before Ray is imported
    (`python -m hrnet_eval` calls it first: the job's modules import Ray). For a private
    local cluster (no `address` / $RAY_ADDRESS) that is `local_cluster_env`. Ray reads its
    auth settings when it is imported: after that it is too late, and `connect` refuses."""
    # Errors of shards the driver stopped waiting for are not news.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    # Ray's prefixes of forwarded worker lines stay plain text in a job's log file; so do
    # repeated lines: Ray's "[repeated Nx across cluster]" note is always coloured, so
    # they are not folded into one.
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if cluster_address(address) or _LOCAL_ENV_SET or "ray" in sys.modules:
        return
    os.environ.update(local_cluster_env())
    _LOCAL_ENV_SET.append(True)


def connect(address=None, *, num_cpus=None):
    """Join the cluster at `address` / $RAY_ADDRESS (as under `ray job submit`),
    else start a private local one (its environment set by `prepare`, here if not
    before). Returns a short description."""
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return "still on the Ray cluster joined to index the data (tar / TFRecord files)"
    address = cluster_address(address)
    prepare(address)
    if not address and not _LOCAL_ENV_SET:
        raise ClusterError(
            "Ray was imported before the local cluster's token was set: start the "
            "local cluster from a fresh process (python -m hrnet_eval)."
        )
    import ray

    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True)
        description = f"joined the Ray cluster at {address}"
    else:
        ray.init(
            address="local",
            include_dashboard=False,  # the dashboard's job API is not needed here
            num_cpus=num_cpus,
            logging_level=logging.WARNING,
            log_to_driver=True,
            _node_ip_address="127.0.0.1",
        )
        description = (
            "started a local Ray cluster (no RAY_ADDRESS given): 127.0.0.1 only, "
            "token auth with a per-run token"
        )
    stop_on_sigterm()
    return description


def node_memory():
    """The smallest memory (bytes) Ray gives the tasks and actors of an alive node."""
    import ray

    sizes = [float(n["Resources"].get("memory", 0)) for n in ray.nodes() if n.get("Alive")]
    return min(sizes, default=0.0)


def builder_env():
    """Environment of the tasks that build a worker's programs: JAX on the CPU (they
    export for the worker's device, and take none of its memory), quiet."""
    return {
        "KERAS_BACKEND": "jax",
        "CUDA_VISIBLE_DEVICES": "",
        "JAX_PLATFORMS": "cpu",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "TF_ENABLE_ONEDNN_OPTS": "0",
    }


def node_resources():
    """(CPUs, GPUs) of each alive node."""
    import ray

    return [
        (float(node["Resources"].get("CPU", 0)), float(node["Resources"].get("GPU", 0)))
        for node in ray.nodes()
        if node.get("Alive")
    ]


CPUS_PER_CPU_WORKER = 8  # a CPU-only node gets one worker per 8 CPUs by default
DECODE_CPUS = 1  # CPUs per node that workers leave to the decode tasks (half of a 1-CPU node)


@dataclasses.dataclass(frozen=True)
class Sizing:
    """Workers and their resources; the CPUs they leave free run the decode tasks."""

    workers: int
    gpus_per_worker: float
    cpus_per_worker: float  # Ray resource of each worker
    threads: int  # compute threads of a CPU worker (torch, TensorFlow)
    decode_cpus: float  # CPUs of the cluster left to the decode tasks
    # a worker's build task, on the worker's node: at most what the workers leave free there
    # (a 1-CPU node whose worker holds half of it builds on the other half)
    builder_cpus: float = 1.0

    @property
    def decode_task_cpus(self):
        """The CPU share of one decode task (1, or what is left on a 1-CPU machine)."""
        return min(1.0, self.decode_cpus)

    @property
    def decode_tasks(self):
        """How many decode tasks run at once."""
        return max(1, int(self.decode_cpus / self.decode_task_cpus + 1e-9))


WORKER_BASE_BYTES = 2.2 * 2**30  # host memory of a worker process, measured peaks ...
WORKER_BYTES_PER_PARAM = 6 * 4  # ... plus about 6x each row's fp32 weights (CPU workers)
MEMORY_SHARE = 0.8  # of Ray's memory resource of a node that the workers may fill


def worker_bytes(rows, gpus_per_worker):
    """Host memory a worker takes, by the rule fitted to measured peaks (`rows_per_worker`'s):
    ~2.2 GiB, plus for a CPU worker ~6x the fp32 weights of the largest of `rows` (the one
    row every worker holds at least)."""
    largest = max((get_preset(r).params for r in rows), default=0)
    return WORKER_BASE_BYTES + (0 if gpus_per_worker > 0 else WORKER_BYTES_PER_PARAM * largest)


def size_workers(workers, gpus_per_worker, cpus_per_worker, *, nodes, units, memory=None, rows=()):
    """The `Sizing` for the options given (None: default) on `nodes` ((CPUs, GPUs) each).

    GPU workers: one per `gpus_per_worker` share of a node's GPUs (default share 1 when
    the cluster has GPUs, else CPU workers), 1 CPU each: the GPU computes, the other
    CPUs decode. CPU workers: one per 8 CPUs of a node, sharing its CPUs but one, which
    stays for decoding (their compute threads use the whole node: decoding is a small
    part of a CPU worker's work; with `cpus_per_worker` given, that many threads). Fails
    if the workers do not fit or leave no CPU free: by CPUs (without `cpus_per_worker`, a
    CPU worker gets at least 1 CPU, half of a 1-CPU node), by GPUs, and, given `memory`
    (bytes of Ray's memory resource of the smallest node), by `worker_bytes(rows)`. The
    message gives the number that fits; the default count never exceeds it.
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
            f"No node has {gpus_per_worker:g} GPUs free for a worker: lower --gpus-per-worker."
        )
    cpus = sum(c for c, _ in slots)
    explicit = cpus_per_worker is not None
    if not explicit:
        if gpus_per_worker > 0:
            cpus_per_worker = min(1.0, min(max(c - DECODE_CPUS, c / 2) / n for c, n in slots))
        elif workers:
            cpus_per_worker = max(cpus - DECODE_CPUS * len(slots), cpus / 2) / workers
            floor = 1.0 if any(c >= 2 for c, _ in slots) else 0.5
            fit = sum(int(max(c - DECODE_CPUS, c / 2) / floor + 1e-9) for c, _ in slots)
            if workers > fit:
                raise ClusterError(
                    f"--workers {workers} does not fit: the cluster's {cpus:g} CPUs hold "
                    f"{fit} CPU worker(s) of {floor:g} CPU (1 CPU per node stays for "
                    f"decoding). Give --workers {fit}, or --cpus-per-worker to share CPUs "
                    "(e.g. 0.5)."
                )
        else:
            cpus_per_worker = min(max(c - DECODE_CPUS, c / 2) / n for c, n in slots)
        cpus_per_worker = float(int(cpus_per_worker)) if cpus_per_worker >= 1 else cpus_per_worker
    if gpus_per_worker > 0:  # GPU workers need their CPUs on the same node
        capacity = sum(min(n, int(c / cpus_per_worker + 1e-9)) for c, n in slots)
    else:
        capacity = sum(int(c / cpus_per_worker + 1e-9) for c, _ in slots)
    wanted = sum(n for _, n in slots) if workers is None else workers
    if memory is not None:
        each = worker_bytes(rows, gpus_per_worker)
        held = len(slots) * int(MEMORY_SHARE * memory / each)
        if held < 1 or (workers is not None and wanted > held):
            raise ClusterError(
                f"{wanted} worker(s) of about {each / 2**30:.1f} GiB each do not fit in memory: "
                f"the nodes give tasks {memory / 2**30:.1f} GiB each (smallest), "
                f"{MEMORY_SHARE:.0%} of which holds {held}. "
                + (f"Give --workers {held}." if held else "Use a node with more memory.")
            )
        wanted = min(wanted, held)
    if capacity < 1 or wanted > capacity:
        kind = f"{gpus_per_worker:g} GPUs and " if gpus_per_worker else ""
        raise ClusterError(
            f"The cluster holds {capacity} workers of {kind}{cpus_per_worker:g} CPUs, not "
            f"{wanted}: lower --workers, --gpus-per-worker or --cpus-per-worker."
        )
    workers = max(1, min(wanted, units))
    all_cpus = sum(c for c, _ in nodes)
    decode_cpus = all_cpus - workers * cpus_per_worker
    if decode_cpus < 0.5 - 1e-9:
        raise ClusterError(
            f"{workers} workers of {cpus_per_worker:g} CPUs leave none of the cluster's "
            f"{all_cpus:g} CPUs to decode images: lower --cpus-per-worker or --workers."
        )
    spare = min(c - min(n, int(c / cpus_per_worker + 1e-9)) * cpus_per_worker for c, n in slots)
    builder_cpus = round(max(0.0, min(1.0, spare)), 4)
    if gpus_per_worker > 0:
        threads = 1
    elif explicit:  # as many threads as the CPUs asked for
        threads = max(1, int(cpus_per_worker))
    else:  # the node's cores, shared by its workers (decoding is a small part of the work)
        threads = max(1, int(cpus / wanted))
    return Sizing(
        workers, float(gpus_per_worker), float(cpus_per_worker), threads, decode_cpus, builder_cpus
    )


def worker_env(backend, gpus_per_worker, compile_cache=None, threads=None):
    """Environment variables of a worker process, which the worker sets itself before it
    imports a framework (`WorkerConfig.env`, `apply_env`): a runtime_env of the actor's own would
    make Ray start a new process for it instead of taking one of its idle workers.

    CPU workers of torch and TensorFlow compute on `threads` threads, so workers
    sharing a node do not oversubscribe it. JAX has no thread-count setting for
    the CPU: its workers use every core.
    """
    env = {"KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if backend != "tensorflow":
        # Keras' serialization imports TensorFlow where it is installed; its oneDNN
        # start-up lines would be the only TensorFlow output of a JAX or torch worker.
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    if gpus_per_worker == 0:
        env["CUDA_VISIBLE_DEVICES"] = ""
        env["JAX_PLATFORMS"] = "cpu"
        if threads is not None:
            threads = str(max(1, int(threads)))
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
