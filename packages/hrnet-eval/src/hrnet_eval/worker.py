"""The Ray actor: several rows on one GPU share (or CPU), scoring decoded shards.

Each row is one function `f(uint8 batch) -> (top-5 classes, finite-logits flags)`:
BatchNorm folded into the convs, normalisation and top-5 inside the compiled
function, so only uint8 pixels go to the device and five indices per image come
back. On JAX it is a cached program, loaded by `hrnet_eval.programs.Loader`
(read from the node's cache, built there by a CPU-only Ray task when missing,
compiled through JAX's persistent cache): the worker imports neither Keras nor
TensorFlow. On TensorFlow and torch the worker builds the row itself
(`hrnet_keras.inference.optimize_for_inference`).

Rows load one call each and concurrently (a threaded actor): the scheduler
scores shards under the rows that are ready while others still load. The worker
never decodes: `score` gets a shard's decoded chunks and runs them through each
row it is asked for, so an image decoded once serves every row. `EvalWorker`
has no Ray import at module level: the scheduler wraps it with `ray.remote`.
It sets its own process environment (`WorkerConfig.env`) before it imports a
framework, so the actor needs no runtime environment of its own and Ray starts
it in one of the idle workers it keeps ready, not in a new process. A JAX worker
imports JAX and starts its device on a thread of its own from the start, while
its first row's entries are checked and read.
"""

import dataclasses
import functools
import os
import resource
import sys
import threading
import time

import numpy as np

from hrnet_eval import memory
from hrnet_eval.cluster import apply_env
from hrnet_eval.decode import join
from hrnet_eval.errors import WorkerError
from hrnet_eval.node_files import local_weights
from hrnet_eval.nodes import current_node
from hrnet_eval.permissions import temporary_folder
from hrnet_eval.programs import TOP_K, Loader
from hrnet_eval.store import RowCounts, ScoredShard, recount

DEVICE_WAIT_S = 900  # the longest a load waits for the worker's JAX device to start


@dataclasses.dataclass(frozen=True)
class Loaded:
    """A row made ready: in `seconds`, "cached", "built", "in-process" (TensorFlow, torch)
    or "loaded" (already held), with notes for the log and {step: seconds}."""

    row: str
    seconds: float
    how: str
    notes: list
    steps: dict


class EvalWorker:
    """Holds the rows it has loaded; scores decoded shards under each of them. `config`:
    a `hrnet_eval.config.WorkerConfig`."""

    def __init__(self, config):
        apply_env(config.env)
        os.environ.setdefault("KERAS_BACKEND", config.backend)
        self.config, self.backend, self.batch_size = config, config.backend, config.batch_size
        self.classifiers = {}  # row -> f(uint8 NHWC batch) -> (top-5 indices, finite flags)
        self.specs = {}
        self.device = None
        self._lock = threading.Lock()  # guards the dicts above
        self._keras_lock = threading.Lock()  # Keras model building is not thread-safe
        self._device_error = None
        self._device_up = threading.Event()  # set once the device was started (or failed)
        self.programs = None
        if config.backend == "jax":  # JAX's import and device start overlap the first reads
            self.programs = Loader(config, self.wait_device)
            threading.Thread(target=self._start_device, name="jax-device", daemon=True).start()

    def load(self, spec, group=None):
        """Make row `spec` ready (a `Loaded`), dropping loaded rows that are not in `group`
        (row specs; default: keep all)."""
        began = time.perf_counter()
        group_specs = list(group or [spec])
        keep = {s.name for s in group_specs} | {spec.name}
        with self._lock:
            for name in [n for n in self.classifiers if n not in keep]:
                del self.classifiers[name], self.specs[name]
            if self.specs.get(spec.name) == spec:
                return Loaded(spec.name, 0.0, "loaded", [], {})
        classify, how, notes, steps = self._classifier(spec, group_specs)
        with self._lock:
            self.classifiers[spec.name], self.specs[spec.name] = classify, spec
        seconds = round(time.perf_counter() - began, 2)
        print(
            f"worker pid {os.getpid()}: {spec.name} ready on {self.device} ({self.backend}, "
            f"batch {self.batch_size}, {how}) in {seconds:.1f} s",
            flush=True,
        )
        return Loaded(spec.name, seconds, how, notes, steps)

    def score(self, rows, *chunks):
        """The `ScoredShard` of one shard's decoded `chunks` under each of `rows` (rows
        of one decoding). Batches are zero-padded to `batch_size`, so every image goes
        through the same compiled program whatever the shard size."""
        missing = [row for row in rows if row not in self.classifiers]
        if missing:
            raise WorkerError(f"Worker pid {os.getpid()} has not loaded {', '.join(missing)}.")
        here = current_node()
        moved = sum(c["images"].nbytes for c in chunks if c.get("node") not in (None, here))
        shard = join(chunks)
        labels, names = shard["labels"], shard["names"]
        counts = {}
        for row in rows:
            start = time.perf_counter()
            top5, finite = self.top5(row, shard["images"])
            top1_hits, top5_hits = recount(top5, labels)
            counts[row] = RowCounts(
                images=len(labels),
                top1_hits=top1_hits,
                top5_hits=top5_hits,
                seconds=time.perf_counter() - start,
                top5_classes=top5,
                nonfinite=[name for name, ok in zip(names, finite) if not ok],
            )
        return ScoredShard(
            rows=counts,
            labels=labels,
            names=names,
            skipped=shard["skipped"],
            digests=shard["digests"],
            worker=self.describe(),
            image_bytes=int(shard["images"].nbytes),
            moved_bytes=int(moved),
        )

    def top5(self, row, images):
        """(top-5 class lists, finite flags) of uint8 `images` (n, crop, crop, 3) under `row`."""
        classify, n, b = self.classifiers[row], len(images), self.batch_size
        pending = []
        for start in range(0, n, b):  # dispatch every batch, then wait: transfers overlap
            batch = images[start : start + b]
            if len(batch) < b:
                batch = np.concatenate(
                    [batch, np.zeros((b - len(batch), *batch.shape[1:]), "uint8")]
                )
            pending.append(classify(batch))
        if not pending:
            return [], []
        top5 = np.concatenate([to_numpy(p[0]) for p in pending])[:n]
        finite = np.concatenate([to_numpy(p[1]) for p in pending])[:n]
        return top5.tolist(), finite.tolist()

    def describe(self):
        """Where this worker runs (pid, node, accelerator ids, backend device), its rows
        and its peak RSS."""
        info = {
            "pid": os.getpid(),
            "backend": self.backend,
            "device": self.device,
            "rows": list(self.specs),
            "peak_rss_mib": round(peak_rss_mib(), 1),
        }
        try:
            import ray

            context = ray.get_runtime_context()
            info["node"] = context.get_node_id()
            info["gpu_ids"] = [str(i) for i in context.get_accelerator_ids().get("GPU", [])]
        except Exception:  # not inside Ray (direct use, tests)
            pass
        return info

    def node(self):
        """(Ray node id, address) of this worker's node."""
        import ray

        return current_node(), ray.util.get_node_ip_address()

    def wait_device(self):
        """Wait until JAX's device is up; raises `WorkerError` where it did not start."""
        if not self._device_up.wait(DEVICE_WAIT_S):
            raise WorkerError(f"Worker pid {os.getpid()} did not start its device in time.")
        if self._device_error is not None:
            raise WorkerError(
                f"Worker pid {os.getpid()} could not start JAX's device: {self._device_error}"
            )

    def _start_device(self):
        """Import JAX and start its first device (a thread of `__init__`)."""
        try:
            import jax

            self.device = f"{jax.devices()[0].platform}:{jax.devices()[0].id}"
        except Exception as exc:  # reported by `wait_device`, to the loads
            self._device_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._device_up.set()

    def _classifier(self, spec, group_specs):
        """(classify, how, notes, steps) of row `spec`, compiled and called once."""
        if self.programs is not None:  # its build task has the weights file, if needed
            return self.programs.load(spec, group_specs)
        began = time.perf_counter()
        folder = self.config.compile_cache or _private_folder()
        path = local_weights(spec, folder, self.config.files_node)
        steps = {"fetch": round(time.perf_counter() - began, 2)} if path != spec.weights else {}
        spec = dataclasses.replace(spec, weights=path)
        problem = memory.batch_problem(
            spec.name, spec.preset, self.batch_size, *memory.free_bytes()
        )
        if problem:
            raise WorkerError(problem)
        with self._keras_lock:
            classify = keras_classifier(spec)
            self.device = device_name(self.backend)
        began = time.perf_counter()
        crop = spec.preset.pipeline.crop
        to_numpy(classify(np.zeros((self.batch_size, crop, crop, 3), "uint8"))[0])
        steps["first_call"] = round(time.perf_counter() - began, 2)
        return classify, "in-process", [], steps


def keras_classifier(spec):
    """`f(uint8 batch) -> (top-5, finite)` of row `spec` built in this process (TensorFlow,
    torch)."""
    import keras

    import hrnet_keras
    from hrnet_keras.inference import optimize_for_inference

    if spec.weights is None:
        keras.utils.set_random_seed(spec.seed)
    pipeline = spec.preset.pipeline
    model = hrnet_keras.create_model(
        spec.name,
        weights=spec.weights,
        input_shape=(pipeline.crop, pipeline.crop, 3),
        classifier_activation=None,
    )
    return optimize_for_inference(
        model,
        from_uint8=True,
        top_k=TOP_K,
        finite=True,
        mean=pipeline.mean,
        std=pipeline.std,
        to_numpy=False,
    )


def to_numpy(tensor):
    """A NumPy array of a backend's tensor (JAX arrays and NumPy need no Keras)."""
    if isinstance(tensor, np.ndarray) or "keras" not in sys.modules:
        return np.asarray(tensor)
    import keras

    return keras.ops.convert_to_numpy(tensor)


# where a worker without a cache keeps fetched weights files: one folder per process
_private_folder = functools.cache(temporary_folder)


def peak_rss_mib():
    """This process's peak resident set size so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS


def device_name(backend):
    """The device a Keras backend computes on, e.g. "cuda:0" or "cpu"."""
    if backend == "torch":
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu:0" if tf.config.list_logical_devices("GPU") else "cpu"
    return backend
