"""Built inference programs, cached on disk: a warm worker loads a row instead of building it.

A JAX worker scores a row with one program: the row's architecture, BatchNorm
folded into its convs, uint8 images in, top-5 classes and a finite-logits flag
out, serialised with `jax.export` (StableHLO, a data format). Its weights, folded,
are a safetensors file apart from it, so rows of one architecture and input
(W18 and W18-SSLD) share the program:

    ROOT/programs/<sha256 of the program key>/{entry.json, program.stablehlo}
    ROOT/weights/<sha256 of the weights key>/{entry.json, weights.safetensors}
    ROOT/checked/<sha256 of the key>/{entry.json, tensors.json}

(`checked`: the job's note that a weights file of that sha256 passed its check for
that row, `hrnet_eval.weights.resolve`, so a warm run does not read it tensor by tensor.)

A key names everything the entry was built from (architecture, batch size, input
size and normalisation, library versions, platform and device kind; for weights the
weights file's sha256 or the demo seed). `entry.json` holds the key and the
sha256 of the payload: an entry whose key or checksum differs, or that cannot be
read, is removed and built again, never used. Entries appear by one directory
rename (atomic), so runs sharing a cache never see half an entry. JAX compiles
a loaded program through its persistent compilation cache (ROOT itself).

`build` runs in a builder process (a Ray task on the worker's node, CPU only, or,
for a job's own local cluster, a process of the driver started before the cluster:
`hrnet_eval.prebuild`) and imports Keras; reading an entry (`ProgramCache.read`) imports neither Keras nor
TensorFlow.
"""

import contextlib
import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

from hrnet_keras.checkpoints.checksums import file_sha256

FORMAT = 2  # bump when what an entry holds changes (2: the row's own input and normalisation)
TOP_K = 5
PROGRAM_FILE = "program.stablehlo"
WEIGHTS_FILE = "weights.safetensors"
log = logging.getLogger(__name__)


class CacheMiss(Exception):
    """No usable entry; `str()` says why ("" where there simply is none)."""


@functools.cache
def library_versions():
    """Versions of what a program is made and run with (read without importing them, once
    per process: every key holds them)."""
    import hrnet_keras

    versions = {"hrnet_keras": hrnet_keras.__version__}
    for package in ("jax", "jaxlib", "keras", "numpy"):
        versions[package] = importlib.metadata.version(package)
    return versions


@dataclasses.dataclass(frozen=True)
class Target:
    """Where and how a worker runs its programs."""

    platform: str  # jax.export's name: "cpu", "cuda", "rocm", "tpu"
    device_kind: str  # e.g. "NVIDIA H200", "cpu"
    batch_size: int

    @classmethod
    def current(cls, batch_size):
        """This process's first JAX device."""
        import jax

        device = jax.devices()[0]
        platform = device.platform
        if platform == "gpu":
            platform = "rocm" if "rocm" in device.client.platform_version.lower() else "cuda"
        return cls(platform=platform, device_kind=device.device_kind, batch_size=batch_size)


def architecture_key(spec):
    """What of row `spec`'s program its row decides: its architecture, and of its pipeline
    the input size and normalisation (the decode before it happens elsewhere). Rows of one
    architecture key share a program on any one target."""
    pipeline = spec.preset.pipeline
    return {
        "arch": spec.preset.arch,
        "input": [pipeline.crop, pipeline.crop, 3],
        "top_k": TOP_K,
        "mean": list(pipeline.mean),
        "std": list(pipeline.std),
    }


def program_key(spec, target):
    """What row `spec`'s program is made from: its `architecture_key`, the `target` and the
    library versions."""
    return {
        "kind": "program",
        "format": FORMAT,
        **architecture_key(spec),
        "batch_size": target.batch_size,
        "platform": target.platform,
        "device_kind": target.device_kind,
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


class ProgramCache:
    """Entries under `root` (created 0700); see the module docstring."""

    def __init__(self, root):
        self.root = Path(root)

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

    @contextlib.contextmanager
    def lock(self, name):
        """Held while `name` is being built: builders of one node wait for each other
        instead of building the same entries twice."""
        import fcntl

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


def build(root, specs, target):
    """Make the missing entries of `specs` (rows of ONE `architecture_key`) for `target`:
    the program once, the folded weights of each spec. Returns {row: {step: seconds}}
    (steps: imports, model, fold, target, export).

    "model" builds the folded twin (and, for a seeded row, the unfolded model that draws
    its weights); "fold" reads a `.weights.h5` into the twin, folded, with no unfolded model
    (`load_folded_weights`), or, where the file does not map onto the twin (one warning
    line), loads it into the unfolded model and folds that (`fold_weights`).

    `target`: a `Target`, or a callable that returns it, called once the first model is
    folded (a worker asks for its build before its own device is up; "target" is the wait
    for it). Imports Keras (JAX backend, any device: programs are lowered for
    `target.platform`).
    """
    cache = ProgramCache(root)
    arch = architecture_key(specs[0])
    if any(architecture_key(spec) != arch for spec in specs):
        raise ValueError(f"build takes rows of one program, not {[s.name for s in specs]}")
    steps = {spec.name: {} for spec in specs}

    def resolve(row):
        nonlocal target
        if not isinstance(target, Target):
            began = time.perf_counter()
            target = target()
            steps[row]["target"] = time.perf_counter() - began
        return program_key(specs[0], target)

    with cache.lock(arch["arch"]):
        todo = [s for s in specs if not _present(cache, weights_key(s))]
        if not todo and _present(cache, resolve(specs[0].name)):
            return _rounded(steps)
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
        want_program = None  # known once the target is
        for spec in todo or specs[:1]:
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
            if spec.weights is not None and spec.weights.endswith(".weights.h5"):
                try:  # read into the twin, folded: no unfolded model built
                    load_folded_weights(twin, spec.weights)
                    folded = True
                except FoldedWeightsError as exc:
                    log.warning("%s: read through the unfolded model: %s", spec.name, exc)
            if not folded:
                if spec.weights is not None and model is None:
                    model = hrnet_keras.create_model(
                        spec.name,
                        weights=spec.weights,
                        input_shape=arch["input"],
                        classifier_activation=None,
                    )
                elif spec.weights is not None:
                    load_weights(model, spec.weights, spec.name)
                fold_weights(model, twin)
            steps[spec.name]["fold"] = time.perf_counter() - began
            if want_program is None:
                pkey = resolve(spec.name)
                want_program = not _present(cache, pkey)
            began = time.perf_counter()
            weights = None
            if want_program:
                program, weights = export_jax_program(
                    twin,
                    target.batch_size,
                    platforms=(target.platform,),
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
    return _rounded(steps)


def build_task(env, root, specs, target):
    """`build` as a Ray task that sets its own environment (`env`, before it imports JAX),
    so Ray runs it in one of its idle workers, not in a new process; remote it with
    `max_calls=1`, so that process, with JAX imported for the CPU, leaves with it."""
    from hrnet_eval.worker import apply_env

    apply_env(env)
    return build(root, specs, target)


def _rounded(steps):
    """{row: {step: seconds}} with seconds rounded; a wait for the target under 0.01 s left out."""
    return {
        row: {k: round(v, 2) for k, v in s.items() if k != "target" or v >= 0.01}
        for row, s in steps.items()
    }


def _present(cache, key):
    try:
        cache.read(key)
        return True
    except CacheMiss:
        return False
