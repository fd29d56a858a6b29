"""`EvalConfig`: one evaluation job's settings, as `python -m hrnet_eval` parsed them."""

import dataclasses
import os
from pathlib import Path

DEFAULT_OUTPUT = "results"
# The family --all means (hrnet_keras.configs.FAMILIES): the mmclassification table; the others
# are named by --family or --models.
TABLE_FAMILY = "mmcls"
DEFAULT_SHARD_SIZE = 500
DEFAULT_BATCH_SIZE = 32
DEFAULT_PROGRESS_SECONDS = 10.0
# after a lost worker, how long a job waits for a node that can host another (an autoscaler's
# new node takes minutes)
DEFAULT_WORKER_WAIT_SECONDS = 600.0
PLACEMENTS = ("worker-node", "anywhere")  # --decode-placement
DEMO_DEFAULTS = {
    "output": "results/demo",
    "shard_size": 4,
    "batch_size": 4,
    "gpus_per_worker": 0.0,
    "workers": 1,
    "models": ("hrnet-w18",),
}


def default_compile_cache():
    """$JAX_COMPILATION_CACHE_DIR, else ~/.cache/hrnet-eval/jax."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return os.path.join(base, "hrnet-eval", "jax")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how; None means "the cluster decides" (see --help)."""

    models: tuple
    data: str | None = None  # None with `demo`
    labels: str | None = None
    limit: int | None = None
    skip_corrupt: bool = False
    demo: bool = False
    weights_dir: str | None = None
    no_download: bool = False
    output: str = DEFAULT_OUTPUT
    backend: str = "jax"
    batch_size: int = DEFAULT_BATCH_SIZE
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None
    workers: int | None = None
    rows_per_worker: int | None = None
    shard_size: int = DEFAULT_SHARD_SIZE
    decode_placement: str = PLACEMENTS[0]
    address: str | None = None
    local_cpus: int | None = None
    # the workers' programs and XLA's compiled code (`hrnet_eval.programs`); None: none kept
    compile_cache: str | None = dataclasses.field(default_factory=default_compile_cache)
    progress_seconds: float = DEFAULT_PROGRESS_SECONDS
    worker_wait_seconds: float = DEFAULT_WORKER_WAIT_SECONDS

    @classmethod
    def from_namespace(cls, args):
        """The config of parsed options `args` (None: not given), with the demo's defaults
        and then this class's filled in; `--compile-cache none` is None."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)}
        if given["demo"]:
            for key, value in DEMO_DEFAULTS.items():
                if given[key] is None:
                    given[key] = value
        cache = given.pop("compile_cache")
        given = {key: value for key, value in given.items() if value is not None}
        given["models"] = tuple(given.get("models", ()))
        if cache is not None:
            given["compile_cache"] = None if cache.lower() == "none" else cache
        return cls(**given)


@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    """What a scoring actor (`hrnet_eval.worker.EvalWorker`) is started with. It sets `env`
    itself before it imports a framework (no runtime_env: Ray gives it one of its idle
    workers); its build tasks take `builder_cpus` CPUs and set `builder_env`. A row's weights
    file it cannot read with the driver's bytes comes from `files_node`
    (`hrnet_eval.node_files`)."""

    backend: str = "jax"
    batch_size: int = DEFAULT_BATCH_SIZE
    compile_cache: str | None = None  # the program cache; None: a private folder per worker
    env: dict = dataclasses.field(default_factory=dict)
    builder_env: dict = dataclasses.field(default_factory=dict)
    builder_cpus: float = 1.0
    files_node: str | None = None  # the driver's node: its disk holds the weights files
