"""The Ray actor: several rows on one GPU share (or CPU), scoring decoded shards.

Each row runs through `hrnet_keras.inference.optimize_for_inference` with uint8
in and top-5 classes out: BatchNorm folded into the convs, normalisation and
top-5 inside the compiled function (JAX `jit`, TensorFlow XLA, torch's own
functions), so only uint8 pixels go to the device and five indices per image
come back. The worker never decodes: `score` gets a shard's decoded chunks
(Ray resolves them from the object store) and runs them through each row it is
asked for, so an image decoded once serves every row. `EvalWorker` has no Ray
import: the scheduler wraps it with `ray.remote`.
"""

import concurrent.futures
import os
import time

import numpy as np

from hrnet_eval.decode import IMAGE_SIZE, join
from hrnet_eval.spec import ModelSpec  # noqa: F401  (re-exported)

TOP_K = 5


class WorkerError(RuntimeError):
    """A worker cannot do its unit (e.g. weights missing on its node)."""


class EvalWorker:
    """Holds the rows it was loaded with; scores decoded shards under each of them."""

    def __init__(self, backend, batch_size):
        os.environ.setdefault("KERAS_BACKEND", backend)
        self.backend = backend
        self.batch_size = batch_size
        self.classifiers = {}  # row -> f(uint8 NHWC batch) -> top-5 indices (backend tensor)
        self.specs = {}
        self.device = None

    def load(self, specs):
        """Build, fold and compile the rows `specs` (dropping any others); returns
        `describe()` with the seconds each row took. Compiles run in parallel on JAX."""
        keep = {s.name for s in specs if self.specs.get(s.name) == s}
        self.classifiers = {n: f for n, f in self.classifiers.items() if n in keep}
        self.specs = {n: s for n, s in self.specs.items() if n in keep}
        began, seconds = time.perf_counter(), {}
        parallel = self.backend == "jax"  # XLA compiles outside the GIL
        with concurrent.futures.ThreadPoolExecutor(max(1, len(specs)) if parallel else 1) as pool:
            warming = {}
            for spec in specs:
                if spec.name in self.classifiers:
                    continue
                start = time.perf_counter()
                classify = self._classifier(spec)
                warming[spec.name] = (spec, classify, start, pool.submit(self._warm_up, classify))
            for name, (spec, classify, start, future) in warming.items():
                future.result()
                self.classifiers[name], self.specs[name] = classify, spec
                seconds[name] = round(time.perf_counter() - start, 2)
        self.device = _device_name()
        print(
            f"worker pid {os.getpid()}: {', '.join(self.specs)} ready on {self.device} "
            f"({self.backend}, batch {self.batch_size}) in {time.perf_counter() - began:.1f} s",
            flush=True,
        )
        return {**self.describe(), "load_seconds": seconds}

    def score(self, rows, *chunks):
        """Counts and top-5 classes of one shard's decoded `chunks` under each of `rows`.

        Returns {"rows": {row: {images, top1, top5, top5_classes, seconds}}, "labels",
        "names", "skipped", "worker"}. Batches are zero-padded to `batch_size`, so every
        image goes through the same compiled program whatever the shard size.
        """
        missing = [row for row in rows if row not in self.classifiers]
        if missing:
            raise WorkerError(f"Worker pid {os.getpid()} has not loaded {', '.join(missing)}.")
        shard = join(chunks)
        labels = shard["labels"]
        out = {}
        for row in rows:
            start = time.perf_counter()
            top5 = self.top5(row, shard["images"])
            out[row] = {
                "images": len(labels),
                "top1": sum(int(t[0] == y) for t, y in zip(top5, labels)),
                "top5": sum(int(y in t) for t, y in zip(top5, labels)),
                "top5_classes": top5,
                "seconds": time.perf_counter() - start,
            }
        return {
            "rows": out,
            "labels": labels,
            "names": shard["names"],
            "skipped": shard["skipped"],
            "worker": self.describe(),
        }

    def top5(self, row, images):
        """Top-5 class lists of uint8 `images` (n, 224, 224, 3) under `row`."""
        import keras

        classify, n, b = self.classifiers[row], len(images), self.batch_size
        pending = []
        for start in range(0, n, b):  # dispatch every batch, then wait: transfers overlap
            batch = images[start : start + b]
            if len(batch) < b:
                batch = np.concatenate(
                    [batch, np.zeros((b - len(batch), *batch.shape[1:]), "uint8")]
                )
            pending.append(classify(batch))
        indices = [keras.ops.convert_to_numpy(p) for p in pending]
        return np.concatenate(indices)[:n].tolist() if indices else []

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

    def _classifier(self, spec):
        """`f(uint8 batch) -> top-5 indices` of row `spec`, not yet compiled."""
        import keras

        import hrnet_keras
        from hrnet_keras.inference import optimize_for_inference

        if spec.weights is not None and not os.path.isfile(spec.weights):
            raise WorkerError(
                f"Weights file {spec.weights} is not readable on this worker's node: "
                "--weights-dir must be at the same path on every node."
            )
        if spec.weights is None:
            keras.utils.set_random_seed(spec.seed)
        model = hrnet_keras.create_model(
            spec.name,
            weights=spec.weights,
            input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
            classifier_activation=None,
        )
        return optimize_for_inference(model, from_uint8=True, top_k=TOP_K, to_numpy=False)

    def _warm_up(self, classify):
        import keras

        batch = np.zeros((self.batch_size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8")
        keras.ops.convert_to_numpy(classify(batch))


def peak_rss_mib():
    """This process's peak resident set size so far, in MiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS


def _device_name():
    """The device the Keras backend computes on, e.g. "cuda:0" or "cpu"."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{device.id}"
    if backend == "torch":
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu:0" if tf.config.list_logical_devices("GPU") else "cpu"
    return backend
