"""The worker's decode pipeline and counting, with a stand-in for the model (fast)."""

import shutil
import threading
import time

import numpy as np
import pytest

from hrnet_eval import worker as worker_module
from hrnet_eval.data import Item, load_dataset
from hrnet_eval.images import ImageError
from hrnet_eval.worker import EvalWorker, ModelSpec

SPEC = ModelSpec(name="hrnet-w18", weights=None, key="stub")


def stub_logits(batch):
    """Deterministic logits that depend on each image alone."""
    means = batch.reshape(len(batch), -1, 3).mean(axis=1)  # (n, 3)
    classes = np.arange(1000)
    return np.cos(np.outer(means[:, 0], classes) / 97.0 + np.outer(means[:, 1], classes) / 89.0)


class StubWorker(EvalWorker):
    """EvalWorker with the model replaced by `stub_logits`; records batch shapes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_shapes = []

    def _ensure_model(self, spec):
        self.spec = spec

    def _predict(self, x_uint8):
        self.batch_shapes.append(x_uint8.shape)
        return stub_logits(x_uint8.astype("float64"))


@pytest.fixture(scope="module")
def flat_items(photo_dir, tmp_path_factory):
    labels = tmp_path_factory.mktemp("labels") / "labels.txt"
    labels.write_text("".join(f"{(7 * i) % 1000}\n" for i in range(1, 25)))
    return list(load_dataset(photo_dir, labels_file=labels).items)


def expected_top5(items):
    from hrnet_keras import load_image

    images = np.stack([load_image(i.source) for i in items]).astype("float64")
    return np.argsort(-stub_logits(images), axis=1, kind="stable")[:, :5].tolist()


def test_shards_and_batches_do_not_change_results(flat_items):
    whole = StubWorker("jax", batch_size=5, decode_threads=2).evaluate(SPEC, flat_items)
    pieces = StubWorker("jax", batch_size=3, decode_threads=1)
    parts = [pieces.evaluate(SPEC, flat_items[s : s + 7]) for s in range(0, 24, 7)]
    assert whole["top5_classes"] == [t for p in parts for t in p["top5_classes"]]
    assert whole["top5_classes"] == expected_top5(flat_items)
    assert whole["labels"] == [i.label for i in flat_items]  # order kept
    for key in ("images", "top1", "top5"):
        assert whole[key] == sum(p[key] for p in parts)
    top5, labels = whole["top5_classes"], whole["labels"]
    assert whole["top1"] == sum(t[0] == y for t, y in zip(top5, labels))
    assert whole["top5"] == sum(y in t for t, y in zip(top5, labels))
    # Every forward pass has the full batch (the last one zero-padded).
    assert set(pieces.batch_shapes) == {(3, 224, 224, 3)}


def test_labels_that_hit(flat_items):
    """Labels set to the predicted classes give exact top-1 / top-5 counts."""
    top5 = expected_top5(flat_items[:6])
    relabelled = [
        Item(i.name, top5[k][0] if k < 3 else top5[k][4], i.source)
        for k, i in enumerate(flat_items[:6])
    ]
    result = StubWorker("jax", batch_size=4, decode_threads=2).evaluate(SPEC, relabelled)
    assert (result["images"], result["top1"], result["top5"]) == (6, 3, 6)


def test_corrupt_image_fails_or_is_skipped(flat_items, tmp_path):
    broken = tmp_path / "ILSVRC2012_val_00000003.JPEG"
    shutil.copyfile(flat_items[2].source, broken)
    broken.write_bytes(broken.read_bytes()[:300])
    items = (
        flat_items[:2]
        + [Item(flat_items[2].name, flat_items[2].label, str(broken))]
        + flat_items[3:6]
    )
    with pytest.raises(ImageError, match=f"Cannot decode image {broken}"):
        StubWorker("jax", batch_size=2, decode_threads=2).evaluate(SPEC, items)
    result = StubWorker("jax", batch_size=2, decode_threads=2).evaluate(
        SPEC, items, skip_corrupt=True
    )
    assert result["images"] == 5
    assert [where for where, _ in result["skipped"]] == [str(broken)]
    assert result["labels"] == [i.label for k, i in enumerate(items) if k != 2]
    clean = StubWorker("jax", batch_size=2, decode_threads=2).evaluate(
        SPEC, flat_items[:2] + flat_items[3:6]
    )
    assert clean["top5_classes"] == result["top5_classes"]


def test_decoding_runs_ahead_while_the_model_is_busy(flat_items, monkeypatch):
    loaded = []
    real_load = worker_module.load
    monkeypatch.setattr(worker_module, "load", lambda item: loaded.append(item) or real_load(item))
    busy = StubWorker("jax", batch_size=2, decode_threads=2, prefetch_batches=3)
    results = []
    with busy.model_lock:  # another shard is using the model
        thread = threading.Thread(target=lambda: results.append(busy.evaluate(SPEC, flat_items)))
        thread.start()
        deadline = time.monotonic() + 30
        while len(loaded) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert len(loaded) == 6  # one window (3 batches) decoded ahead, no more
    thread.join(timeout=60)
    assert results and results[0]["images"] == 24 and len(loaded) == 24
