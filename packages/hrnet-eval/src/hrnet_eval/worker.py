"""The Ray actor: several rows on one GPU share (or CPU), scoring decoded shards.

Each row is one function `f(uint8 batch) -> (top-5 classes, finite-logits flags)`:
BatchNorm folded into the convs, normalisation and top-5 inside the compiled
function, so only uint8 pixels go to the device and five indices per image come
back. On JAX it is a cached program (`hrnet_eval.programs`): a warm worker reads
it from its node's cache and compiles it (JAX's persistent compilation cache),
importing neither Keras nor TensorFlow; a missing one is built by a CPU-only
Ray task on the same node, one per program, while the worker goes on. On
TensorFlow and torch the worker builds the row itself
(`hrnet_keras.inference.optimize_for_inference`).

Rows load one call each and concurrently (a threaded actor): the scheduler
scores shards under the rows that are ready while others still load. Rows of
one program (W18 and W18-SSLD) share its compiled function, compiled once; the
XLA compiles of programs built in this run go one at a time (concurrent ones
contend for the node's cores and the GPU's autotuning: on an H200, nine at once
were each ready only after ~280 s, where W18 alone compiles in 10 s), while
programs read from the cache, whose compile is a cache hit, load concurrently. The worker
never decodes: `score` gets a shard's decoded chunks and runs them through each
row it is asked for, so an image decoded once serves every row. `EvalWorker`
has no Ray import at module level: the scheduler wraps it with `ray.remote`.
It sets its own process environment (`env`) before it imports a framework, so
the actor needs no runtime environment of its own and Ray starts it in one of
the idle workers it keeps ready, not in a new process. A JAX worker imports
JAX and starts its device on a thread of its own from the start, while its
first row's weights entry is checked and read.
"""

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
import typing

import numpy as np

from hrnet_eval import programs
from hrnet_eval.decode import join
from hrnet_eval.store import RowCounts, ScoredShard

TOP_K = programs.TOP_K


class WorkerError(RuntimeError):
    """A worker cannot do its unit (e.g. weights missing on its node)."""


TARGET_WAIT_S = 900  # the longest a build task waits for its worker's device


class Build(typing.NamedTuple):
    """A build of the entries of `specs` (rows of one program) asked for at `asked`
    (perf_counter): its Ray task's `ref`, None where it runs in this process."""

    key: tuple
    specs: list
    ref: object
    asked: float


class TargetOf:
    """A build task's target: asks the worker actor that started it, once the task needs
    it (`programs.build` calls it after the fold)."""

    def __init__(self, actor):
        self.actor = actor

    def __call__(self):
        import ray

        return ray.get(self.actor.target.remote())


class EvalWorker:
    """Holds the rows it has loaded; scores decoded shards under each of them."""

    def __init__(
        self,
        *,
        backend,
        batch_size,
        cache_dir=None,
        builder_options=None,
        builder_env=None,
        env=None,
    ):
        apply_env(env or {})
        os.environ.setdefault("KERAS_BACKEND", backend)
        self.backend = backend
        self.batch_size = batch_size
        # Where programs are kept; without a cache, a private folder of this worker,
        # removed at exit, whose weights entries go as soon as they are read.
        self.private = cache_dir is None
        self.cache_dir = cache_dir or tempfile.mkdtemp(prefix="hrnet-eval-programs-")
        if self.private:
            atexit.register(shutil.rmtree, self.cache_dir, ignore_errors=True)
        else:
            os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        self.builder_options = builder_options or {}  # Ray options of the build tasks
        self.builder_env = builder_env or {}  # which they set themselves
        self.classifiers = {}  # row -> f(uint8 NHWC batch) -> (top-5 indices, finite flags)
        self.specs = {}
        self.device = None
        self._lock = threading.Lock()  # guards the dicts and the builds below
        self._keras_lock = threading.Lock()  # Keras model building is not thread-safe
        self._builds = {}  # (architecture digest, weights keys) -> Build
        self._target = None
        self._device_error = None
        self._target_known = threading.Event()  # set once the device was started (or failed)
        if backend == "jax":  # JAX's import and device start overlap the first load's reads
            threading.Thread(target=self._start_device, name="jax-device", daemon=True).start()
        self._calls = {}  # program digest -> (jitted call, lock held over its first call)
        self._compile_lock = threading.Lock()  # first calls of newly built programs

    def load(self, spec, group=None):
        """Make row `spec` ready, dropping loaded rows that are not in `group` (row names;
        default: keep all). Returns {"row", "seconds", "how", "notes", "steps"} and
        `describe()`: "how" is "cached", "built" or "in-process"."""
        began = time.perf_counter()
        group_specs = list(group or [spec])
        keep = {s.name for s in group_specs} | {spec.name}
        with self._lock:
            for name in [n for n in self.classifiers if n not in keep]:
                del self.classifiers[name], self.specs[name]
            if self.specs.get(spec.name) == spec:
                return {"row": spec.name, "seconds": 0.0, "how": "loaded", "notes": []}
        classify, how, notes, steps, first_call_locks = self._classifier(spec, group_specs)
        warm_up = time.perf_counter()
        with contextlib.ExitStack() as held:
            for lock in first_call_locks:
                held.enter_context(lock)
            steps["queued"] = time.perf_counter() - warm_up
            warm_up = time.perf_counter()
            self._warm_up(classify, spec.preset.pipeline.crop)
            steps["first_call"] = time.perf_counter() - warm_up  # JAX: the compile
        if steps["queued"] < 0.01:  # waited for no other compile
            del steps["queued"]
        steps = {step: round(seconds, 2) for step, seconds in steps.items()}
        with self._lock:
            self.classifiers[spec.name], self.specs[spec.name] = classify, spec
        seconds = round(time.perf_counter() - began, 2)
        print(
            f"worker pid {os.getpid()}: {spec.name} ready on {self.device} ({self.backend}, "
            f"batch {self.batch_size}, {how}) in {seconds:.1f} s",
            flush=True,
        )
        return {"row": spec.name, "seconds": seconds, "how": how, "notes": notes, "steps": steps}

    def score(self, rows, *chunks):
        """The `ScoredShard` of one shard's decoded `chunks` under each of `rows` (rows
        of one decoding). Batches are zero-padded to `batch_size`, so every image goes
        through the same compiled program whatever the shard size."""
        missing = [row for row in rows if row not in self.classifiers]
        if missing:
            raise WorkerError(f"Worker pid {os.getpid()} has not loaded {', '.join(missing)}.")
        shard = join(chunks)
        labels, names = shard["labels"], shard["names"]
        counts = {}
        for row in rows:
            start = time.perf_counter()
            top5, finite = self.top5(row, shard["images"])
            counts[row] = RowCounts(
                images=len(labels),
                top1_hits=sum(int(t[0] == y) for t, y in zip(top5, labels)),
                top5_hits=sum(int(y in t) for t, y in zip(top5, labels)),
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
        top5 = np.concatenate([self._numpy(p[0]) for p in pending])[:n]
        finite = np.concatenate([self._numpy(p[1]) for p in pending])[:n]
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

    def _classifier(self, spec, group_specs):
        """(classify, how, notes, steps, locks to hold over its first call) of row `spec`,
        not yet run."""
        if spec.weights is not None and not os.path.isfile(spec.weights):
            raise WorkerError(
                f"Weights file {spec.weights} is not readable on this worker's node: "
                "--weights-dir must be at the same path on every node."
            )
        if self.backend == "jax":
            return self._cached_program(spec, group_specs)
        with self._keras_lock:
            return self._keras_classifier(spec), "in-process", [], {}, []

    def _cached_program(self, spec, group_specs):
        """Row `spec` from the program cache, built there first if missing. A row whose
        weights entry is missing has its build asked for before JAX's device is up: the
        builder asks this worker for its target only when it is ready to export."""
        arch = programs.architecture_key(spec)
        same = [s for s in group_specs if programs.architecture_key(s) == arch]
        same = same if spec in same else [spec]
        cache = programs.ProgramCache(self.cache_dir)
        notes, steps, how, build, weights_path = [], {}, "cached", None, None
        weights_key = programs.weights_key(spec)
        began, weights = time.perf_counter(), None
        try:  # checked and read while JAX's device starts (`_start_device`)
            weights_path = cache.read(weights_key)
            weights = programs.read_weights(weights_path)
            steps["read"] = time.perf_counter() - began
        except programs.CacheMiss as miss:
            notes += [str(miss)] if str(miss) else []
            build = self._start_build(arch, same, early=True)
        began = time.perf_counter()
        target = self.target()
        waited = time.perf_counter() - began
        if waited >= 0.01:  # the part of JAX's import and device start the reads left
            steps["device"] = waited
        import jax

        program_key = programs.program_key(spec, target)
        keys = (program_key, weights_key)
        try:
            if build is not None or weights_path is None:
                raise programs.CacheMiss("")  # being built already, or to be built now
            paths = [cache.read(program_key), weights_path]
        except programs.CacheMiss as miss:
            notes += [str(miss)] if str(miss) else []
            build = build or self._start_build(arch, same)
            built = dict(self._finish_build(build)[spec.name])
            # the wait its own steps do not cover: the task's queue and process start, and
            # for a row sharing a program, the other rows' steps (counted from the build's
            # start: the device starts beside an early build)
            built["waited"] = time.perf_counter() - build.asked - sum(built.values())
            steps.update(built)
            how = "built"
            try:
                paths = [cache.read(key) for key in keys]
            except programs.CacheMiss as again:
                raise WorkerError(
                    f"The program of {spec.name} was built but cannot be read from "
                    f"{self.cache_dir}: {again or 'missing'}."
                ) from None
        began = time.perf_counter()
        digest = programs.digest(program_key)
        with self._lock:
            shared = self._calls.get(digest)
        if shared is None:
            program = jax.export.deserialize(bytearray(paths[0].read_bytes()))
            with self._lock:
                shared = self._calls.setdefault(digest, (jax.jit(program.call), threading.Lock()))
        call, program_lock = shared
        if weights is None:
            weights = programs.read_weights(paths[1])
        if self.private:
            shutil.rmtree(paths[1].parent, ignore_errors=True)
        steps["read"] = steps.get("read", 0.0) + time.perf_counter() - began
        began = time.perf_counter()
        trainable, non_trainable = jax.block_until_ready(jax.device_put(weights))
        steps["to_device"] = time.perf_counter() - began
        locks = [self._compile_lock] if how == "built" else []
        locks.append(program_lock)  # the other rows of the program wait, then reuse it
        return (lambda x: call(trainable, non_trainable, x)), how, notes, steps, locks

    def target(self):
        """This worker's `programs.Target` once its device is up (its build tasks ask)."""
        if not self._target_known.wait(TARGET_WAIT_S):
            raise WorkerError(f"Worker pid {os.getpid()} did not start its device in time.")
        if self._target is None:
            raise WorkerError(
                f"Worker pid {os.getpid()} could not start JAX's device: {self._device_error}"
            )
        return self._target

    def _start_device(self):
        """Import JAX and start its first device (a thread of `__init__`): sets the target."""
        try:
            import jax

            self._target = programs.Target.current(self.batch_size)
            self.device = f"{jax.devices()[0].platform}:{jax.devices()[0].id}"
        except Exception as exc:  # reported by `target()`, to the load and the build tasks
            self._device_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._target_known.set()

    def _start_build(self, arch, specs, early=False):
        """The `Build` of the entries of `specs` (rows of one program): a CPU-only Ray task
        on this node, one per program and shared by the rows that wait for it; outside Ray,
        built in this process by `_finish_build`. `early`: asked for before the device is
        up, so the task asks this actor for the target (None outside an actor)."""
        import ray

        key = (programs.digest(arch), tuple(s.key for s in specs))
        with self._lock:
            build = self._builds.get(key)
            if build is not None:
                return build
            ref = None
            if ray.is_initialized():
                context = ray.get_runtime_context()
                if early:
                    try:
                        target = TargetOf(context.current_actor)
                    except RuntimeError:  # not an actor: build once the target is known
                        return None
                else:
                    target = self._target
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                # max_calls=1: the process, with JAX imported for the CPU, leaves with the task
                task = ray.remote(max_calls=1)(programs.build_task).options(
                    **self.builder_options,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(
                        context.get_node_id(), soft=False
                    ),
                )
                ref = task.remote(self.builder_env, self.cache_dir, specs, target)
            elif early:
                return None
            build = self._builds[key] = Build(key, specs, ref, time.perf_counter())
            return build

    def _finish_build(self, build):
        """{row: {step: seconds}} of `build`, once done."""
        import ray

        try:
            if build.ref is None:
                with self._keras_lock:
                    return programs.build(self.cache_dir, build.specs, self._target)
            return ray.get(build.ref)
        finally:
            with self._lock:
                self._builds.pop(build.key, None)

    def _keras_classifier(self, spec):
        """`f(uint8 batch) -> (top-5, finite)` of row `spec` built here (TF, torch)."""
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
        self.device = _device_name(self.backend)
        return optimize_for_inference(
            model,
            from_uint8=True,
            top_k=TOP_K,
            finite=True,
            mean=pipeline.mean,
            std=pipeline.std,
            to_numpy=False,
        )

    def _warm_up(self, classify, size):
        batch = np.zeros((self.batch_size, size, size, 3), dtype="uint8")
        self._numpy(classify(batch)[0])

    def _numpy(self, tensor):
        if self.backend == "jax" or isinstance(tensor, np.ndarray):
            return np.asarray(tensor)
        import keras

        return keras.ops.convert_to_numpy(tensor)


FRAMEWORKS = ("jax", "keras", "tensorflow", "torch")  # read the environment when imported


def apply_env(env):
    """Set `env` in this process's environment (`hrnet_eval.cluster.worker_env`); raises
    `WorkerError` where a framework that reads it was imported before with other values."""
    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    imported = [m for m in FRAMEWORKS if m in sys.modules]
    if changed and imported:
        raise WorkerError(
            f"Worker pid {os.getpid()} imported {', '.join(imported)} before its environment "
            f"({', '.join(f'{k}={v}' for k, v in changed.items())}) was set: start the worker "
            "in a fresh process."
        )
    os.environ.update(changed)


def peak_rss_mib():
    """This process's peak resident set size so far, in MiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS


def _device_name(backend):
    """The device a Keras backend computes on, e.g. "cuda:0" or "cpu"."""
    if backend == "torch":
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu:0" if tf.config.list_logical_devices("GPU") else "cpu"
    return backend
