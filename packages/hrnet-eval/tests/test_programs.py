"""The program cache: keys that separate what must differ, damaged entries rebuilt, atomic
entries shared by concurrent runs, and a cached program scoring as the Keras model does."""

import json
import multiprocessing

import numpy as np
import pytest

from hrnet_eval import programs
from hrnet_eval.demo import random_spec
from hrnet_eval.spec import ModelSpec

CPU8 = programs.Target(platform="cpu", device_kind="cpu", batch_size=8)


def test_keys_separate_weights_batch_device_and_architecture():
    w18 = ModelSpec("hrnet-w18", "a/hrnet-w18.weights.h5", "sha256:aaaa")
    other_bytes = ModelSpec("hrnet-w18", "a/hrnet-w18.weights.h5", "sha256:bbbb")
    ssld = ModelSpec("hrnet-w18-ssld", "b.weights.h5", "sha256:cccc")
    cache = programs.ProgramCache("/nowhere")
    paths = {cache.entry(programs.weights_key(s)) for s in (w18, other_bytes, ssld)}
    assert len(paths) == 3  # same name, other bytes: another entry
    assert programs.weights_key(random_spec("hrnet-w18"))["weights"] == "keras-init-seed-0"
    base = programs.program_key(w18, CPU8)
    assert base == programs.program_key(w18, CPU8)  # deterministic
    assert base == programs.program_key(ssld, CPU8)  # one architecture, input, normalisation
    # timm's W18 (crop_pct 0.95) decodes differently, but its program is W18's
    assert base == programs.program_key(random_spec("hrnet_w18.ms_aug_in1k"), CPU8)
    for changed in (
        programs.program_key(w18, programs.Target("cpu", "cpu", 16)),
        programs.program_key(w18, programs.Target("cuda", "NVIDIA H200", 8)),
        programs.program_key(random_spec("hrnet-w32"), CPU8),
        programs.program_key(random_spec("hrnet_w18_small.gluon_in1k"), CPU8),
    ):
        assert cache.entry(changed) != cache.entry(base)
    assert base["versions"]["jax"] and base["format"] == programs.FORMAT


def _write(cache, key, payload):
    return cache.write(key, "payload.bin", lambda path: path.write_bytes(payload))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda e: (e / "payload.bin").write_bytes(b"other bytes"), "does not match its recorded"),
        (lambda e: (e / "payload.bin").write_bytes(b"12"), "does not match its recorded"),
        (lambda e: (e / "entry.json").write_text("{"), "damaged"),
        (lambda e: (e / "payload.bin").unlink(), "No such file"),
    ],
)
def test_damaged_entry_is_named_removed_and_never_used(tmp_path, damage, reason):
    cache = programs.ProgramCache(tmp_path)
    key = programs.weights_key(random_spec("hrnet-w18"))
    path = _write(cache, key, b"0123456789")
    assert cache.read(key) == path and path.read_bytes() == b"0123456789"
    damage(path.parent)
    with pytest.raises(programs.CacheMiss, match=reason) as miss:
        cache.read(key)
    assert str(path.parent) in str(miss.value) and "rebuilding" in str(miss.value)
    assert not path.parent.exists()
    with pytest.raises(programs.CacheMiss, match="^$"):  # now simply missing
        cache.read(key)


def test_entry_filed_under_another_key_is_refused(tmp_path):
    cache = programs.ProgramCache(tmp_path)
    key = programs.weights_key(random_spec("hrnet-w18"))
    other = {**key, "weights": "sha256:other"}
    path = _write(cache, key, b"x")
    meta = json.loads((path.parent / "entry.json").read_text())
    (path.parent / "entry.json").write_text(json.dumps({**meta, "key": other}))
    with pytest.raises(programs.CacheMiss, match="its key differs"):
        cache.read(key)


def _write_many(root, payload):
    cache = programs.ProgramCache(root)
    key = programs.weights_key(random_spec("hrnet-w18"))
    for _ in range(20):
        _write(cache, key, payload)
        assert cache.read(key).read_bytes() in (b"A" * 100_000, b"B" * 100_000)


def test_two_runs_writing_one_cache_leave_a_whole_entry(tmp_path):
    context = multiprocessing.get_context("spawn")
    procs = [
        context.Process(target=_write_many, args=(tmp_path, c * 100_000)) for c in (b"A", b"B")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    cache = programs.ProgramCache(tmp_path)
    key = programs.weights_key(random_spec("hrnet-w18"))
    assert cache.read(key).read_bytes() in (b"A" * 100_000, b"B" * 100_000)
    assert not list(cache.entry(key).parent.glob(".tmp-*"))  # no half-written entry left


def test_cached_program_scores_as_the_keras_model(tmp_path):
    """W18 built into the cache, then read back by a fresh worker (no build): the same
    top-5 as the Keras model's own forward pass; a damaged weights entry is rebuilt."""
    import keras

    import hrnet_keras
    from hrnet_eval.worker import EvalWorker

    spec = random_spec("hrnet-w18")
    images = np.random.default_rng(0).integers(0, 256, (5, 224, 224, 3), dtype=np.uint8)
    built = EvalWorker(backend="jax", batch_size=4, cache_dir=str(tmp_path))
    assert built.load(spec)["how"] == "built"
    warm = EvalWorker(backend="jax", batch_size=4, cache_dir=str(tmp_path))
    info = warm.load(spec)
    assert info["how"] == "cached" and info["notes"] == []
    top5, finite = warm.top5(spec.name, images)
    assert finite == [True] * 5

    keras.utils.set_random_seed(spec.seed)
    model = hrnet_keras.create_model(spec.name, classifier_activation=None)
    x = hrnet_keras.preprocess_input(images)
    logits = keras.ops.convert_to_numpy(model(x, training=False))
    assert top5 == np.argsort(-logits, axis=1, kind="stable")[:, :5].tolist()

    cache = programs.ProgramCache(tmp_path)
    weights = cache.read(programs.weights_key(spec))
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    again = EvalWorker(backend="jax", batch_size=4, cache_dir=str(tmp_path))
    info = again.load(spec)
    assert info["how"] == "built" and "damaged" in info["notes"][0]
    assert again.top5(spec.name, images)[0] == top5


def test_rows_of_one_program_compile_it_once(tmp_path):
    """W18 and W18-SSLD (one program, two weights) loaded concurrently by one worker: one
    XLA compile between them, and each row scores with its own weights."""
    import concurrent.futures

    import jax

    from hrnet_eval.worker import EvalWorker

    compiles = []

    def on_event(name, seconds, **kwargs):
        if name == "/jax/core/compile/backend_compile_duration":
            compiles.append(seconds)

    ssld = ModelSpec("hrnet-w18-ssld", None, "keras-init-seed-1", seed=1)  # other weights
    specs = [random_spec("hrnet-w18"), ssld]
    asked = []  # the target as a worker's build task gets it: asked for after the fold

    def target():
        asked.append(True)
        return programs.Target("cpu", "cpu", 4)

    steps = programs.build(tmp_path, specs, target)
    assert asked == [True] and {"model", "fold", "export"} <= set(steps["hrnet-w18"])
    worker = EvalWorker(backend="jax", batch_size=4, cache_dir=str(tmp_path))
    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            loads = list(pool.map(lambda s: worker.load(s, specs), specs))
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    assert [info["how"] for info in loads] == ["cached", "cached"]
    assert len(compiles) == 1, compiles
    images = np.random.default_rng(1).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    alone = EvalWorker(backend="jax", batch_size=4, cache_dir=str(tmp_path))
    alone.load(ssld)
    assert worker.top5(ssld.name, images) == alone.top5(ssld.name, images)
    assert worker.top5(ssld.name, images) != worker.top5(specs[0].name, images)


def test_weights_file_folded_without_the_model_as_through_it(tmp_path, monkeypatch, caplog):
    """A row's `.weights.h5` read straight into the folded twin gives the weights entry that
    the unfolded model's path gives, which a file the twin cannot map takes, with a warning."""
    import keras

    import hrnet_keras
    from hrnet_keras import inference

    keras.utils.set_random_seed(3)
    path = tmp_path / "w18.weights.h5"
    hrnet_keras.create_model("hrnet-w18", classifier_activation=None).save_weights(path)
    spec = ModelSpec("hrnet-w18", str(path), "file-w18")
    direct = programs.build(tmp_path / "direct", [spec], CPU8)["hrnet-w18"]
    assert caplog.records == []

    def refuse(twin, file):
        raise inference.FoldedWeightsError(f"{file}: refused here")

    monkeypatch.setattr(inference, "load_folded_weights", refuse)
    through = programs.build(tmp_path / "through", [spec], CPU8)["hrnet-w18"]
    assert [r.getMessage() for r in caplog.records] == [
        f"hrnet-w18: read through the unfolded model: {path}: refused here"
    ]
    assert set(direct) == set(through) == {"imports", "model", "fold", "export"}
    key = programs.weights_key(spec)
    entries = [
        programs.read_weights(programs.ProgramCache(tmp_path / d).read(key))
        for d in ("direct", "through")
    ]
    assert len(entries[0][0]) > 0  # trainable: every conv's kernel and bias, the head's
    for group_a, group_b in zip(*entries):
        assert len(group_a) == len(group_b)
        assert all(np.array_equal(a, b) for a, b in zip(group_a, group_b))
