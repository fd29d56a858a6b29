"""The Ray actor: one model on its GPU share, fed by a prefetching decode pool.

The model runs through `hrnet_keras.inference.optimize_for_inference`
(BatchNorm folded into the convs, compiled where the backend compiles): the
same logits as the plain model within float rounding, at fewer ops per image.
`EvalWorker` has no Ray import: the scheduler wraps it with `ray.remote`.
Its methods run on up to two threads (the scheduler keeps two shards in
flight per worker), so the next shard decodes while this one runs; the model
itself is used by one shard at a time.
"""

import collections
import concurrent.futures
import os
import threading
import time

import numpy as np

from hrnet_eval.images import ImageError, load
from hrnet_eval.spec import ModelSpec  # noqa: F401  (re-exported)

TOP_K = 5
IMAGE_SIZE = 224


class WorkerError(RuntimeError):
    """A worker cannot do its unit (e.g. weights missing on its node)."""


class EvalWorker:
    """Evaluates shards of one model at a time; decodes with `decode_threads` threads."""

    def __init__(self, backend, batch_size, decode_threads, prefetch_batches=3):
        os.environ.setdefault("KERAS_BACKEND", backend)
        self.backend = backend
        self.batch_size = batch_size
        self.window = batch_size * prefetch_batches
        self.pool = concurrent.futures.ThreadPoolExecutor(max(1, decode_threads))
        self.model_lock = threading.Lock()
        self.spec = None
        self.forward = None  # uint8 NHWC batch -> logits (NumPy)
        self.device = None

    def load(self, spec):
        """Build and warm up model `spec` (compiling it); returns `describe()`."""
        with self.model_lock:
            self._ensure_model(spec)
        return self.describe()

    def evaluate(self, spec, items, skip_corrupt=False):
        """Counts and top-5 classes of `items` under model `spec`.

        Decoding starts at once; inference waits for the model. Images that
        fail to decode raise `ImageError`, or are listed in "skipped" with
        `skip_corrupt`. Batches are zero-padded to `batch_size`, so every image
        goes through the same compiled program whatever the shard size.
        """
        decoded = self._prefetch(items)
        with self.model_lock:
            self._ensure_model(spec)
            start = time.perf_counter()
            result = self._run(decoded, skip_corrupt)
            result["seconds"] = time.perf_counter() - start
        result["worker"] = self.describe()
        return result

    def describe(self):
        """Where this worker runs (pid, node, accelerator ids, backend device) and its peak RSS."""
        info = {
            "pid": os.getpid(),
            "backend": self.backend,
            "device": self.device,
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

    def _prefetch(self, items):
        """Futures of decoded items in order, `window` ahead; yields them as they finish."""
        pending = collections.deque()
        it = iter(items)
        for item in it:
            pending.append((item, self.pool.submit(load, item)))
            if len(pending) >= self.window:
                break

        def stream():
            while pending:
                item, future = pending.popleft()
                for nxt in it:
                    pending.append((nxt, self.pool.submit(load, nxt)))
                    break
                yield item, future

        return stream()

    def _run(self, decoded, skip_corrupt):
        names, labels, top5, skipped = [], [], [], []
        batch = []
        for item, future in decoded:
            try:
                image, label, name = future.result()
            except ImageError as exc:
                if not skip_corrupt:
                    raise
                skipped.append([item.where, str(exc)])
                continue
            batch.append(image)
            names.append(name)
            labels.append(label)
            if len(batch) == self.batch_size:
                top5.extend(self._top5(batch))
                batch = []
        if batch:
            top5.extend(self._top5(batch))
        hits1 = sum(int(t[0] == y) for t, y in zip(top5, labels))
        hits5 = sum(int(y in t) for t, y in zip(top5, labels))
        return {
            "images": len(labels),
            "top1": hits1,
            "top5": hits5,
            "names": names,
            "labels": labels,
            "top5_classes": top5,
            "skipped": skipped,
        }

    def _top5(self, images):
        x = np.zeros((self.batch_size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8")
        x[: len(images)] = np.stack(images)
        logits = np.asarray(self._predict(x))[: len(images)]
        return np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K].tolist()

    def _predict(self, x_uint8):
        from hrnet_keras import preprocess_input

        return self.forward(preprocess_input(x_uint8, data_format="channels_last"))

    def _ensure_model(self, spec):
        if spec == self.spec:
            return
        import keras

        import hrnet_keras
        from hrnet_keras.inference import optimize_for_inference

        self.forward = self.spec = None
        if spec.weights is not None and not os.path.isfile(spec.weights):
            raise WorkerError(
                f"Weights file {spec.weights} is not readable on this worker's node: "
                "--weights-dir must be at the same path on every node."
            )
        begin = time.perf_counter()
        if spec.weights is None:
            keras.utils.set_random_seed(spec.seed)
        model = hrnet_keras.create_model(
            spec.name,
            weights=spec.weights,
            input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
            classifier_activation=None,
        )
        self.forward, self.spec = optimize_for_inference(model), spec
        del model
        self._predict(np.zeros((self.batch_size, IMAGE_SIZE, IMAGE_SIZE, 3), dtype="uint8"))
        self.device = _device_name()
        print(
            f"worker pid {os.getpid()}: {spec.name} ready on {self.device} "
            f"({self.backend}, batch {self.batch_size}) in {time.perf_counter() - begin:.1f} s",
            flush=True,
        )


def peak_rss_mib():
    """This process's peak resident set size so far, in MiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (
        peak / (1 << 20) if sys.platform == "darwin" else peak / 1024
    )  # bytes on macOS, KiB on Linux


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
