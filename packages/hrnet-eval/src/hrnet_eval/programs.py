"""Built inference programs, cached on disk, and a JAX worker's loading of them.

A JAX worker scores a row with one program: the row's architecture, BatchNorm
folded into its convs, uint8 images in, top-5 classes and a finite-logits flag
out, serialised with `jax.export` (StableHLO, a data format) for every platform a
worker may have (`PLATFORMS`). Its weights, folded, are a safetensors file apart
from it, so rows of one architecture and input (W18 and W18-SSLD) share the program:

    ROOT/programs/<sha256 of the program key>/{entry.json, program.stablehlo}
    ROOT/weights/<sha256 of the weights key>/{entry.json, weights.safetensors}
    ROOT/checked/<sha256 of the key>/{entry.json, tensors.json}
    ROOT/compiled/<JAX's file name>.json       the sha256 of XLA's compiled code
    ROOT/jit_hrnet_<program>-<JAX's key>-cache XLA's compiled code (JAX's persistent cache)

(`checked`: the job's note that a weights file of that sha256 passed its check for
that row, `hrnet_eval.weights.resolve`, so a warm run does not read it tensor by tensor.)

A key names everything the entry was built from (architecture, batch size, input
size and normalisation, library versions; for weights the weights file's sha256 or
the demo seed); no device: JAX's own cache keys the compiled code per device.
`entry.json` holds the key and the sha256 of the payload: an entry whose key or
checksum differs, or that cannot be read, is removed and built again, never used.
Entries appear by one directory rename (atomic), so runs sharing a cache never see
half an entry. The compiled code JAX keeps for a program (named after it) is checked
against its record before JAX may load it; one that differs or has none is removed
and compiled again, once, with a note naming it. A worker compiles with
`hrnet_keras.compile_options.jax_compiler_options()` (a CPU's fastest; part of JAX's key).

`build` runs in a builder process (a Ray task on the worker's node, CPU only, or,
for a job's own local cluster, a process of the driver started before the cluster:
`hrnet_eval.prebuild`) and imports Keras; `Loader` (in the worker) imports neither
Keras nor TensorFlow.
"""

import contextlib
import fcntl
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import threading
import time
import typing
import uuid
from pathlib import Path

import numpy as np
from hrnet_keras.checkpoints.checksums import file_sha256
from hrnet_keras.compile_options import jax_compiler_options

from hrnet_eval import memory
from hrnet_eval.cluster import apply_env
from hrnet_eval.node_files import local_weights
from hrnet_eval.permissions import temporary_folder

FORMAT = 3  # bump when what an entry holds changes (3: every platform, compiled code checked)
PLATFORMS = ("cpu", "cuda")  # what programs are lowered for (CI's logical GPUs run on the CPU)
TOP_K = 5
PROGRAM_FILE = "program.stablehlo"
WEIGHTS_FILE = "weights.safetensors"
log = logging.getLogger(__name__)


class CacheMiss(Exception):
    """No usable entry; `str()` says why ("" where there simply is none)."""


class ProgramError(RuntimeError):
    """A row's program cannot be had (built but unreadable)."""


@functools.cache
def library_versions():
    """Versions of what a program is made and run with (read without importing them, once
    per process: every key holds them)."""
    import hrnet_keras

    versions = {"hrnet_keras": hrnet_keras.__version__}
    for package in ("jax", "jaxlib", "keras", "numpy"):
        versions[package] = importlib.metadata.version(package)
    return versions


def architecture_key(spec):
    """What of row `spec`'s program its row decides: its architecture, and of its pipeline
    the input size and normalisation (the decode before it happens elsewhere). Rows of one
    architecture key share a program."""
    pipeline = spec.preset.pipeline
    return {
        "arch": spec.preset.arch,
        "input": [pipeline.crop, pipeline.crop, 3],
        "top_k": TOP_K,
        "mean": list(pipeline.mean),
        "std": list(pipeline.std),
    }


def program_key(spec, batch_size):
    """What row `spec`'s program is made from: its `architecture_key`, the run's batch size,
    the platforms it is lowered for and the library versions."""
    return {
        "kind": "program",
        "format": FORMAT,
        **architecture_key(spec),
        "batch_size": batch_size,
        "platforms": list(PLATFORMS),
        "versions": library_versions(),
    }


def weights_key(spec):
    """What a row's folded weights are made from: the weights file's identity (its
    sha256) or, for `--demo`'s rows, the seed of Keras' initialisers."""
    return {
        "kind": "weights",
        "format": FORMAT,
        "arch": spec.preset.arch,
        "weights": spec.key,
        "versions": library_versions(),
    }


def digest(key):
    """The sha256 (hex) a key is filed under."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def compiled_name(key):
    """The function name a program is compiled under: JAX files its compiled code as
    `jit_<name>-<JAX's key>-cache`, so a program's files are known by name."""
    return f"hrnet_{digest(key)[:32]}"


class ProgramCache:
    """Entries under `compile_cache` (created 0700); see the module docstring."""

    def __init__(self, compile_cache):
        self.root = Path(compile_cache)

    def entry(self, key):
        folder = {"program": "programs", "weights": "weights", "checked": "checked"}[key["kind"]]
        return self.root / folder / digest(key)

    def read(self, key):
        """The payload path of `key`'s entry, checked; raises `CacheMiss` (with the reason
        where the entry was there but unusable, and is now removed)."""
        entry = self.entry(key)
        if not entry.exists():
            raise CacheMiss("")
        try:
            meta = json.loads((entry / "entry.json").read_text())
            payload = entry / meta["file"]
            if meta.get("key") != key:
                raise ValueError("its key differs from what it is filed under")
            if file_sha256(payload) != meta["sha256"]:
                raise ValueError(f"{meta['file']} does not match its recorded sha256")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            shutil.rmtree(entry, ignore_errors=True)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise CacheMiss(f"cache entry {entry} is damaged ({reason}): removed, rebuilding")
        return payload

    def write(self, key, filename, write):
        """Make `key`'s entry: `write(path)` writes the payload, then the entry appears
        at once (a directory rename). Another run's entry for the same key is kept."""
        entry = self.entry(key)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        entry.parent.mkdir(exist_ok=True, mode=0o700)
        tmp = entry.parent / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir(mode=0o700)
        try:
            write(tmp / filename)
            meta = {"key": key, "file": filename, "sha256": file_sha256(tmp / filename)}
            (tmp / "entry.json").write_text(json.dumps(meta, indent=1))
            shutil.rmtree(entry, ignore_errors=True)  # a damaged one, already reported
            try:
                os.rename(tmp, entry)
            except OSError:  # a run beside this one made it first
                pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return entry / filename

    def compiled(self, name, folder):
        """JAX's compiled code of program `name` in `folder` (its persistent cache)."""
        return sorted(Path(folder).glob(f"jit_{name}-*-cache"))

    def check_compiled(self, name, folder):
        """Remove the compiled code of program `name` in `folder` whose sha256 is not the
        one recorded when it was written; returns a note for each file removed."""
        notes = []
        for path in self.compiled(name, folder):
            record = self.root / "compiled" / f"{path.name}.json"
            try:
                meta = json.loads(record.read_text())
                why = None if meta["sha256"] == file_sha256(path) else "does not match its record"
            except FileNotFoundError:
                why = "has no record"
            except (OSError, ValueError, KeyError, TypeError):
                why = "has a damaged record"
            if why:
                path.unlink(missing_ok=True)
                record.unlink(missing_ok=True)
                notes.append(f"compiled code {path} {why}: removed, compiling again")
        return notes

    def record_compiled(self, name, folder):
        """Record the sha256 of program `name`'s compiled code in `folder` that has none yet
        (what JAX just wrote), each record written at once (a rename)."""
        records = self.root / "compiled"
        for path in self.compiled(name, folder):
            record = records / f"{path.name}.json"
            if record.exists():
                continue
            records.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = records / f".tmp-{uuid.uuid4().hex}"
            tmp.write_text(json.dumps({"file": path.name, "sha256": file_sha256(path)}))
            os.replace(tmp, record)

    @contextlib.contextmanager
    def lock(self, name):
        """Held while `name` is being built: builders of one node wait for each other
        instead of building the same entries twice."""
        path = self.root / "locks" / f"{name}.lock"
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.parent.mkdir(exist_ok=True, mode=0o700)
        with open(path, "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def read_weights(path):
    """(trainable, non_trainable) NumPy arrays of a weights entry."""
    from safetensors.numpy import load_file

    tensors = load_file(path)
    groups = {"t": [], "n": []}
    for name in sorted(tensors):  # "t00012" / "n00003": group and argument position
        groups[name[0]].append(tensors[name])
    return groups["t"], groups["n"]


def _write_weights(path, weights):
    from safetensors.numpy import save_file

    trainable, non_trainable = weights
    tensors = {f"t{i:05d}": w for i, w in enumerate(trainable)}
    tensors.update({f"n{i:05d}": w for i, w in enumerate(non_trainable)})
    save_file(tensors, path)


def build(compile_cache, specs, batch_size, files_node=None):
    """Make the missing entries of `specs` (rows of ONE `architecture_key`) for batches of
    `batch_size`: the program once, the folded weights of each spec. Returns
    {row: {step: seconds}} (steps: imports, fetch, model, fold, export). A row's `.weights.h5` is
    read where this node has the bytes the driver checked, else fetched from the driver's
    node `files_node` (`hrnet_eval.node_files`), and that copy removed once folded.

    "model" builds the folded twin (and, for a seeded row, the unfolded model that draws
    its weights); "fold" reads a `.weights.h5` into the twin, folded, with no unfolded model
    (`load_folded_weights`), or, where the file does not map onto the twin (one warning
    line), loads it into the unfolded model and folds that (`fold_weights`). Imports Keras
    (JAX backend, any device: programs are lowered for every platform of `PLATFORMS`).
    """
    cache = ProgramCache(compile_cache)
    arch = architecture_key(specs[0])
    if any(architecture_key(spec) != arch for spec in specs):
        raise ValueError(f"build takes rows of one program, not {[s.name for s in specs]}")
    steps = {spec.name: {} for spec in specs}
    pkey = program_key(specs[0], batch_size)
    with cache.lock(arch["arch"]):
        todo = [s for s in specs if not _present(cache, weights_key(s))]
        want_program = not _present(cache, pkey)
        if not todo and not want_program:
            return steps
        began = time.perf_counter()
        import keras

        import hrnet_keras
        from hrnet_keras.inference import (
            FoldedWeightsError,
            export_jax_program,
            fold_weights,
            folded_model,
            load_folded_weights,
        )
        from hrnet_keras.loading import load_weights

        steps[(todo or specs)[0].name]["imports"] = time.perf_counter() - began
        model = twin = None
        for spec in todo or specs[:1]:
            began = time.perf_counter()
            path = local_weights(spec, compile_cache, files_node)
            if path != spec.weights:  # fetched from the driver's node (or this node's copy)
                steps[spec.name]["fetch"] = time.perf_counter() - began
                began = time.perf_counter()
            folded = False
            if spec.weights is None:  # seeded: the unfolded model draws the weights
                keras.utils.set_random_seed(spec.seed)
                model = hrnet_keras.create_model(
                    spec.name, input_shape=arch["input"], classifier_activation=None
                )
            if twin is None:  # built folded: no clone of the model
                twin = folded_model(
                    spec.name, input_shape=arch["input"], classifier_activation=None
                )
            steps[spec.name]["model"] = time.perf_counter() - began
            began = time.perf_counter()
            if path is not None and path.endswith(".weights.h5"):
                try:  # read into the twin, folded: no unfolded model built
                    load_folded_weights(twin, path)
                    folded = True
                except FoldedWeightsError as exc:
                    log.warning("%s: read through the unfolded model: %s", spec.name, exc)
            if not folded:
                if path is not None and model is None:
                    model = hrnet_keras.create_model(
                        spec.name,
                        weights=path,
                        input_shape=arch["input"],
                        classifier_activation=None,
                    )
                elif path is not None:
                    load_weights(model, path, spec.name)
                fold_weights(model, twin)
            if path != spec.weights:  # a copy fetched for this build: the entry holds it now
                Path(path).unlink(missing_ok=True)
            steps[spec.name]["fold"] = time.perf_counter() - began
            began = time.perf_counter()
            weights = None
            if want_program:
                program, weights = export_jax_program(
                    twin,
                    batch_size,
                    platforms=PLATFORMS,
                    from_uint8=True,
                    top_k=TOP_K,
                    finite=True,
                    mean=arch["mean"],
                    std=arch["std"],
                )
                cache.write(pkey, PROGRAM_FILE, lambda path: path.write_bytes(program))
                want_program = False
            if spec in todo:
                if weights is None:  # the export read them already
                    weights = [
                        [keras.ops.convert_to_numpy(v.value) for v in variables]
                        for variables in (twin.trainable_variables, twin.non_trainable_variables)
                    ]
                key = weights_key(spec)
                cache.write(key, WEIGHTS_FILE, lambda path: _write_weights(path, weights))
            steps[spec.name]["export"] = time.perf_counter() - began
    return {row: {k: round(v, 2) for k, v in s.items()} for row, s in steps.items()}


def build_task(env, compile_cache, specs, batch_size, files_node=None):
    """`build` as a Ray task that sets its own environment (`env`, before it imports JAX),
    so Ray runs it in one of its idle workers, not in a new process; remote it with
    `max_calls=1`, so that process, with JAX imported for the CPU, leaves with it."""
    apply_env(env)
    return build(compile_cache, specs, batch_size, files_node)


def _present(cache, key):
    try:
        cache.read(key)
        return True
    except CacheMiss:
        return False


class Build(typing.NamedTuple):
    """A build of the entries of `specs` (rows of one program) asked for at `asked`
    (perf_counter): its Ray task's `ref`, None where it runs in the loading process."""

    key: tuple
    specs: list
    ref: object
    asked: float


class Loader:
    """A JAX worker's rows, as programs of the cache at `config.compile_cache` (without
    one, a private folder, removed at exit, whose weights entries go as soon as read).

    A missing entry is built by a CPU-only Ray task on this node (`build_task`, one per
    program, shared by the rows that wait for it; outside Ray, in this process) while the
    worker goes on. Each program is compiled once per process (its rows share it) through
    JAX's persistent cache, its compiled code checked first; compiles of programs built in
    this run go one at a time. `device()` waits for the worker's JAX device."""

    def __init__(self, config, device):
        self.config, self.device = config, device
        self.private = config.compile_cache is None
        self.compile_cache = config.compile_cache or temporary_folder()
        if not self.private:
            os.makedirs(self.compile_cache, mode=0o700, exist_ok=True)
        self.cache = ProgramCache(self.compile_cache)
        self._lock = threading.Lock()  # guards the dicts below
        self._build_lock = threading.Lock()  # builds in this process: Keras is not thread-safe
        self._builds = {}  # (program digest, weights keys) -> Build
        self._calls = {}  # compiled name -> [jitted call, lock over its first call, compiled]
        self._compile_lock = threading.Lock()  # first calls of newly built programs

    def check_fits(self, spec):
        """Raise `ProgramError` where a batch of row `spec` cannot fit the worker's device."""
        import jax

        self.device()
        problem = memory.batch_problem(
            spec.name, spec.preset, self.config.batch_size, *memory.free_bytes(jax.devices()[0])
        )
        if problem:
            raise ProgramError(problem)

    def load(self, spec, group_specs):
        """(classify, how, notes, steps) of row `spec`, compiled and called once: "how" is
        "cached" or "built"; `group_specs`: the rows loaded beside it (those of its program
        are built with it)."""
        arch = architecture_key(spec)
        same = [s for s in group_specs if architecture_key(s) == arch]
        keys = (program_key(spec, self.config.batch_size), weights_key(spec))
        notes, steps, how = [], {}, "cached"
        began = time.perf_counter()
        try:  # read while JAX's device starts
            paths = [self.cache.read(key) for key in keys]
        except CacheMiss as miss:
            notes += [str(miss)] if str(miss) else []
            self.check_fits(spec)  # before anything is exported for this batch
            build = self._start_build(same if spec in same else [spec])
            built = dict(self._finish_build(build)[spec.name])
            # the wait its own steps do not cover: the task's queue and process start, and
            # for a row sharing a program, the other rows' steps
            built["waited"] = time.perf_counter() - build.asked - sum(built.values())
            steps.update({k: round(v, 2) for k, v in built.items()})
            how = "built"
            try:
                paths = [self.cache.read(key) for key in keys]
            except CacheMiss as again:
                raise ProgramError(
                    f"The program of {spec.name} was built but cannot be read from "
                    f"{self.compile_cache}: {again or 'missing'}."
                ) from None
            began = time.perf_counter()
        weights = read_weights(paths[1])
        if self.private:
            shutil.rmtree(paths[1].parent, ignore_errors=True)
        steps["read"] = time.perf_counter() - began
        began = time.perf_counter()
        self.device()
        if time.perf_counter() - began >= 0.01:  # what of JAX's start the reads left
            steps["device"] = time.perf_counter() - began
        if how == "cached":  # a built row was checked before its build
            self.check_fits(spec)  # before it is compiled
        import jax

        name = compiled_name(keys[0])
        with self._lock:
            shared = self._calls.get(name)
        if shared is None:
            program = jax.export.deserialize(bytearray(paths[0].read_bytes()))

            def call(*args):
                return program.call(*args)

            call.__name__ = call.__qualname__ = name  # names JAX's files of its compiled code
            with self._lock:
                compiled = jax.jit(call, compiler_options=jax_compiler_options())
                shared = self._calls.setdefault(name, [compiled, threading.Lock(), False])
        began = time.perf_counter()
        trainable, non_trainable = jax.block_until_ready(jax.device_put(weights))
        steps["to_device"] = time.perf_counter() - began

        def classify(x):
            return shared[0](trainable, non_trainable, x)

        locks = [self._compile_lock] if how == "built" else []
        began = time.perf_counter()
        with contextlib.ExitStack() as held:
            for lock in locks + [shared[1]]:  # the other rows of the program wait, then reuse it
                held.enter_context(lock)
            if time.perf_counter() - began >= 0.01:  # waited for another compile
                steps["queued"] = time.perf_counter() - began
            began = time.perf_counter()
            folder = None if self.private else jax.config.jax_compilation_cache_dir
            if not shared[2] and folder:
                notes += self.cache.check_compiled(name, folder)
            crop = spec.preset.pipeline.crop
            jax.block_until_ready(classify(np.zeros((self.config.batch_size, crop, crop, 3), "u1")))
            if not shared[2] and folder:
                self.cache.record_compiled(name, folder)
            shared[2] = True
            steps["first_call"] = time.perf_counter() - began  # the compile
        return classify, how, notes, {k: round(v, 2) for k, v in steps.items()}

    def _start_build(self, specs):
        """The `Build` of the entries of `specs` (rows of one program): a CPU-only Ray task
        on this node; outside Ray, built in this process by `_finish_build`."""
        import ray

        batch_size = self.config.batch_size
        key = (digest(program_key(specs[0], batch_size)), tuple(s.key for s in specs))
        with self._lock:
            build = self._builds.get(key)
            if build is not None:
                return build
            ref = None
            if ray.is_initialized():
                from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

                node = ray.get_runtime_context().get_node_id()
                # max_calls=1: the process, with JAX imported for the CPU, leaves with the task
                task = ray.remote(max_calls=1)(build_task).options(
                    num_cpus=self.config.builder_cpus,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
                )
                ref = task.remote(
                    self.config.builder_env,
                    self.compile_cache,
                    specs,
                    batch_size,
                    self.config.files_node,
                )
            build = self._builds[key] = Build(key, specs, ref, time.perf_counter())
            return build

    def _finish_build(self, asked):
        """{row: {step: seconds}} of `asked` (a `Build`), once done."""
        import ray

        try:
            if asked.ref is None:
                with self._build_lock:
                    return build(self.compile_cache, asked.specs, self.config.batch_size)
            return ray.get(asked.ref)
        finally:
            with self._lock:
                self._builds.pop(asked.key, None)
