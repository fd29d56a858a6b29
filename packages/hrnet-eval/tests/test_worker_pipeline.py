"""Decoding apart from the model, and the worker's scoring, with a stand-in model (fast)."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hrnet_eval.config import WorkerConfig
from hrnet_eval.data import Item, load_dataset
from hrnet_eval.decode import chunks, decode, join
from hrnet_eval.images import ImageError
from hrnet_eval.spec import ModelSpec
from hrnet_eval.worker import EvalWorker, WorkerError

SPECS = [ModelSpec(name="hrnet-w18", weights=None, key="a"), ModelSpec("hrnet-w30", None, "b")]


def stub_logits(batch, shift=0.0):
    """Deterministic logits that depend on each image alone (and on the row's `shift`)."""
    means = batch.reshape(len(batch), -1, 3).mean(axis=1)  # (n, 3)
    classes = np.arange(1000)
    return np.cos(
        np.outer(means[:, 0], classes) / 97.0 + np.outer(means[:, 1], classes) / 89.0 + shift
    )


class StubWorker(EvalWorker):
    """EvalWorker whose rows are `stub_logits` (shifted per row); records batch shapes."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.batch_shapes = []

    def _classifier(self, spec, group_specs):
        shift = 0.5 * SPECS.index(spec)

        def classify(batch):
            self.batch_shapes.append(batch.shape)
            logits = stub_logits(batch.astype("float64"), shift)
            if spec.key == "nan":  # broken weights: the first image's logits are NaN
                logits[0] = np.nan
            top5 = np.argsort(-logits, axis=1, kind="stable")[:, :5]
            return top5, np.isfinite(logits).all(axis=1)

        return classify, "stub", [], {}


@pytest.fixture(scope="module")
def flat_items(photo_dir, tmp_path_factory):
    labels = tmp_path_factory.mktemp("labels") / "labels.txt"
    labels.write_text("".join(f"{(7 * i) % 1000}\n" for i in range(1, 25)))
    return list(load_dataset(photo_dir, labels_file=labels).items)


def expected_top5(items, shift=0.0):
    from hrnet_keras import load_image

    images = np.stack([load_image(i.source) for i in items]).astype("float64")
    return np.argsort(-stub_logits(images, shift), axis=1, kind="stable")[:, :5].tolist()


def score(worker, items, rows=("hrnet-w18",), chunk=64, skip_corrupt=False):
    parts = [decode(items[s:e], skip_corrupt) for s, e in chunks(0, len(items), chunk)]
    return worker.score(list(rows), *parts)


def test_decode_keeps_order_and_chunks_join_back(flat_items):
    from hrnet_keras import load_image

    whole = decode(flat_items[:7])
    assert whole["images"].dtype == np.uint8 and whole["images"].shape == (7, 224, 224, 3)
    assert whole["names"] == [i.name for i in flat_items[:7]]
    assert whole["labels"] == [i.label for i in flat_items[:7]]
    assert np.array_equal(whole["images"][3], load_image(flat_items[3].source))
    assert chunks(10, 17, 3) == [(10, 13), (13, 16), (16, 17)]
    joined = join([decode(flat_items[s:e]) for s, e in chunks(0, 7, 3)])
    assert np.array_equal(joined["images"], whole["images"])
    assert joined["names"] == whole["names"] and joined["labels"] == whole["labels"]


def test_each_row_decodes_with_its_own_pipeline(flat_items):
    from hrnet_keras import load_image
    from hrnet_keras.configs import get_preset

    from hrnet_eval.images import TABLE, Decoding

    aug = Decoding.of(get_preset("hrnet_w18.ms_aug_in1k").pipeline)  # timm: crop_pct 0.95
    gluon = Decoding.of(get_preset("hrnet_w18_small.gluon_in1k").pipeline)
    assert (aug, gluon) == (Decoding(224, 235, "bilinear"), Decoding(224, 256, "bicubic"))
    source = flat_items[3].source
    for decoding in (aug, gluon):
        image = decode(flat_items[3:4], decoding=decoding)["images"][0]
        want = load_image(source, resize=decoding.resize, interpolation=decoding.interpolation)
        assert np.array_equal(image, want)
        assert not np.array_equal(image, decode(flat_items[3:4], decoding=TABLE)["images"][0])
    wide = decode(flat_items[3:4], decoding=Decoding(288, 288, "bilinear"))["images"]
    assert wide.shape == (1, 288, 288, 3)


def test_shards_chunks_and_batches_do_not_change_results(flat_items):
    whole = StubWorker(WorkerConfig(batch_size=5))
    whole.load(SPECS[0])
    whole = score(whole, flat_items, chunk=10)
    pieces = StubWorker(WorkerConfig(batch_size=3))
    pieces.load(SPECS[0])
    parts = [score(pieces, flat_items[s : s + 7], chunk=2) for s in range(0, 24, 7)]
    got = whole.rows["hrnet-w18"]
    assert got.top5_classes == [t for p in parts for t in p.rows["hrnet-w18"].top5_classes]
    assert got.top5_classes == expected_top5(flat_items)
    assert whole.labels == [i.label for i in flat_items]  # order kept
    for key in ("images", "top1_hits", "top5_hits"):
        assert getattr(got, key) == sum(getattr(p.rows["hrnet-w18"], key) for p in parts)
    top5, labels = got.top5_classes, whole.labels
    assert got.top1_hits == sum(t[0] == y for t, y in zip(top5, labels))
    assert got.top5_hits == sum(y in t for t, y in zip(top5, labels))
    # Every forward pass has the full batch (the last one zero-padded).
    assert set(pieces.batch_shapes) == {(3, 224, 224, 3)}


def test_one_decode_serves_every_row(flat_items):
    worker = StubWorker(WorkerConfig(batch_size=4))
    infos = [worker.load(spec, SPECS) for spec in SPECS]
    assert [info.row for info in infos] == ["hrnet-w18", "hrnet-w30"]
    assert worker.describe()["rows"] == ["hrnet-w18", "hrnet-w30"]
    result = score(worker, flat_items[:6], rows=("hrnet-w18", "hrnet-w30"))
    assert result.rows["hrnet-w18"].top5_classes == expected_top5(flat_items[:6])
    assert result.rows["hrnet-w30"].top5_classes == expected_top5(flat_items[:6], 0.5)
    assert result.rows["hrnet-w18"].top5_classes != result.rows["hrnet-w30"].top5_classes
    worker.load(SPECS[1], SPECS[1:])  # another group: the rows not in it are dropped
    assert list(worker.classifiers) == ["hrnet-w30"]
    with pytest.raises(WorkerError, match="has not loaded hrnet-w18"):
        score(worker, flat_items[:2])


def test_labels_that_hit(flat_items):
    """Labels set to the predicted classes give exact top-1 / top-5 counts."""
    top5 = expected_top5(flat_items[:6])
    relabelled = [
        Item(i.name, top5[k][0] if k < 3 else top5[k][4], i.source)
        for k, i in enumerate(flat_items[:6])
    ]
    worker = StubWorker(WorkerConfig(batch_size=4))
    worker.load(SPECS[0])
    result = score(worker, relabelled).rows["hrnet-w18"]
    assert (result.images, result.top1_hits, result.top5_hits) == (6, 3, 6)


def test_a_workers_record_holds_together_when_read_back(flat_items, tmp_path):
    """What a worker scored, stored and looked up again, passes the resume checks (its
    sha256, its counts recomputed from its own top-5 classes and labels)."""
    from hrnet_eval.plan import Shard, Unit
    from hrnet_eval.store import ShardStore

    worker = StubWorker(WorkerConfig(batch_size=4))
    worker.load(SPECS[0])
    scored = score(worker, flat_items[:6])
    store, unit = ShardStore(tmp_path), Unit("hrnet-w18", Shard(0, 6))
    saved = store.save(unit, {"data": 1}, scored.record("hrnet-w18"))
    assert store.lookup(unit, {"data": 1}) == (saved, None)


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
        decode(items)
    worker = StubWorker(WorkerConfig(batch_size=2))
    worker.load(SPECS[0])
    result = score(worker, items, chunk=4, skip_corrupt=True)
    assert result.rows["hrnet-w18"].images == 5
    assert [where for where, _ in result.skipped] == [str(broken)]
    assert result.labels == [i.label for k, i in enumerate(items) if k != 2]
    clean = score(worker, flat_items[:2] + flat_items[3:6])
    assert clean.rows["hrnet-w18"].top5_classes == result.rows["hrnet-w18"].top5_classes
    everything_broken = score(worker, items[2:3], skip_corrupt=True)
    assert everything_broken.rows["hrnet-w18"].images == 0


def test_non_finite_logits_are_named_not_counted_as_predictions(flat_items):
    """A row whose logits are not all finite reports the images; finite rows report none."""
    broken = ModelSpec("hrnet-w18", None, "nan")
    worker = StubWorker(WorkerConfig(batch_size=3))
    SPECS.append(broken)
    try:
        worker.load(broken, [broken, SPECS[1]])
        worker.load(SPECS[1], [broken, SPECS[1]])
        result = score(worker, flat_items[:5], rows=("hrnet-w18", "hrnet-w30"))
    finally:
        SPECS.remove(broken)
    # batches of 3: the first image of each batch is NaN
    names = [i.name for i in flat_items[:5]]
    assert result.rows["hrnet-w18"].nonfinite == [names[0], names[3]]
    assert result.rows["hrnet-w30"].nonfinite == []


def fresh_python(code):
    """The stripped stdout of `code` run in a new Python process (which must succeed)."""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_worker_sets_its_environment_before_any_framework(tmp_path):
    """The actor needs no runtime_env: in a fresh process the worker module imports no
    framework and the worker sets its environment; after a framework was imported with
    other values it refuses, naming the variable."""
    code = (
        "import sys; from hrnet_eval.worker import EvalWorker; "
        "from hrnet_eval.config import WorkerConfig; from hrnet_eval.cluster import FRAMEWORKS; "
        "assert not [m for m in FRAMEWORKS if m in sys.modules], sys.modules.keys(); "
        "EvalWorker(WorkerConfig(env={'HRNET_EVAL_PROBE': 'set'})); "
        "import os; print(os.environ['HRNET_EVAL_PROBE'])"
    )
    assert fresh_python(code) == "set"
    import jax  # noqa: F401  (imported here: a framework already there)

    EvalWorker(WorkerConfig(env={"PATH": os.environ["PATH"]}))  # unchanged: fine
    with pytest.raises(WorkerError, match=r"imported jax.* \(HRNET_EVAL_PROBE=2\) was set"):
        EvalWorker(WorkerConfig(env={"HRNET_EVAL_PROBE": "2"}))


def test_build_tasks_set_their_environment_before_jax():
    """A build task has no runtime_env either: it sets JAX on the CPU itself, before `build`
    imports JAX (the programs module imports no framework)."""
    code = (
        "import os, sys; import hrnet_eval.programs as p; from hrnet_eval.cluster import FRAMEWORKS; "
        "assert not [m for m in FRAMEWORKS if m in sys.modules]; "
        "p.build = lambda *args: (os.environ['HRNET_EVAL_PROBE'], args); "
        "print(p.build_task({'HRNET_EVAL_PROBE': 'set'}, 'root', ['spec'], 8))"
    )
    out = fresh_python(code)
    assert out == "('set', ('root', ['spec'], 8, None))"


def test_decode_tasks_import_no_framework():
    """The decode and hash tasks run without a runtime_env, in Ray's idle workers, which
    the worker actor may take later: decoding a shard imports no framework."""
    code = (
        "import sys, numpy as np, PIL.Image, tempfile, os; "
        "from hrnet_eval.decode import decode; from hrnet_eval.data import load_dataset; "
        "from hrnet_eval.cluster import FRAMEWORKS; "
        "root = tempfile.mkdtemp(); d = os.path.join(root, 'n01440764'); os.makedirs(d); "
        "PIL.Image.fromarray(np.zeros((300, 400, 3), 'uint8')).save(os.path.join(d, 'a.JPEG')); "
        "out = decode(load_dataset(root).items); "
        "print(out['images'].shape, [m for m in FRAMEWORKS if m in sys.modules])"
    )
    out = fresh_python(code)
    assert out == "(1, 224, 224, 3) []"


def test_worker_names_a_device_that_does_not_start():
    """JAX's device starts on a thread of the worker's own; if it fails, the load gets a
    one-line error naming the cause."""
    code = (
        "from hrnet_eval.worker import EvalWorker, WorkerError; "
        "from hrnet_eval.config import WorkerConfig; "
        "w = EvalWorker(WorkerConfig(env={'JAX_PLATFORMS': 'no-such-platform'}))\n"
        "try:\n    w.wait_device()\nexcept WorkerError as e:\n    print(e)"
    )
    out = fresh_python(code)
    assert "could not start JAX's device:" in out and "no-such-platform" in out
    assert len(out.splitlines()) == 1, out
