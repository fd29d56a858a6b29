"""The program cache: keys that separate what must differ, damaged entries and compiled code
rebuilt, atomic entries shared by concurrent runs, and a cached program scoring as the Keras
model does."""

import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

from hrnet_eval import programs
from hrnet_eval.config import WorkerConfig
from hrnet_eval.demo import random_spec
from hrnet_eval.spec import ModelSpec

SMALL = "hrnet_w18_small.gluon_in1k"


def test_keys_separate_weights_batch_and_architecture_not_device():
    w18 = ModelSpec("hrnet-w18", "a/hrnet-w18.weights.h5", "sha256:aaaa")
    other_bytes = ModelSpec("hrnet-w18", "a/hrnet-w18.weights.h5", "sha256:bbbb")
    ssld = ModelSpec("hrnet-w18-ssld", "b.weights.h5", "sha256:cccc")
    cache = programs.ProgramCache("/nowhere")
    paths = {cache.entry(programs.weights_key(s)) for s in (w18, other_bytes, ssld)}
    assert len(paths) == 3  # same name, other bytes: another entry
    assert programs.weights_key(random_spec("hrnet-w18"))["weights"] == "keras-init-seed-0"
    base = programs.program_key(w18, 8)
    assert base == programs.program_key(w18, 8)  # deterministic
    assert base == programs.program_key(ssld, 8)  # one architecture, input, normalisation
    # timm's W18 (crop_pct 0.95) decodes differently, but its program is W18's
    assert base == programs.program_key(random_spec("hrnet_w18.ms_aug_in1k"), 8)
    for changed in (
        programs.program_key(w18, 16),
        programs.program_key(random_spec("hrnet-w32"), 8),
        programs.program_key(random_spec(SMALL), 8),
    ):
        assert cache.entry(changed) != cache.entry(base)
    assert base["versions"]["jax"] and base["format"] == programs.FORMAT
    # one program for every platform a worker may have: no device in the key
    assert base["platforms"] == ["cpu", "cuda"]
    assert not {"platform", "device_kind"} & set(base)


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
    """A row built into the cache, then read back by a fresh worker (no build): the same
    top-5 as the Keras model's own forward pass; a damaged weights entry is rebuilt. (W18's
    small sibling: what is checked does not depend on the width.)"""
    import keras

    import hrnet_keras
    from hrnet_eval.worker import EvalWorker

    spec = random_spec("hrnet-w18-small")
    images = np.random.default_rng(0).integers(0, 256, (5, 224, 224, 3), dtype=np.uint8)
    config = WorkerConfig(batch_size=4, compile_cache=str(tmp_path))
    built = EvalWorker(config)
    assert built.load(spec).how == "built"
    warm = EvalWorker(config)
    info = warm.load(spec)
    assert info.how == "cached" and info.notes == []
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
    again = EvalWorker(config)
    info = again.load(spec)
    assert info.how == "built" and "damaged" in info.notes[0]
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
    steps = programs.build(tmp_path, specs, 4)
    assert {"model", "fold", "export"} <= set(steps["hrnet-w18"])
    worker = EvalWorker(WorkerConfig(batch_size=4, compile_cache=str(tmp_path)))
    jax.monitoring.register_event_duration_secs_listener(on_event)
    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            loads = list(pool.map(lambda s: worker.load(s, specs), specs))
    finally:
        jax.monitoring.unregister_event_duration_listener(on_event)
    assert [info.how for info in loads] == ["cached", "cached"]
    assert len(compiles) == 1, compiles
    images = np.random.default_rng(1).integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    alone = EvalWorker(WorkerConfig(batch_size=4, compile_cache=str(tmp_path)))
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
    spec = ModelSpec("hrnet-w18", str(path), "sha256:" + programs.file_sha256(path))
    direct = programs.build(tmp_path / "direct", [spec], 8)["hrnet-w18"]
    assert caplog.records == []

    def refuse(twin, file):
        raise inference.FoldedWeightsError(f"{file}: refused here")

    monkeypatch.setattr(inference, "load_folded_weights", refuse)
    through = programs.build(tmp_path / "through", [spec], 8)["hrnet-w18"]
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


WORKERS = r"""
import json, logging, sys
import numpy as np
from hrnet_eval.config import WorkerConfig
from hrnet_eval.demo import random_spec
from hrnet_eval.worker import EvalWorker

hits = []  # compiles of a program that JAX served from its persistent cache (its log says)


class Hits(logging.Handler):
    def emit(self, record):
        if record.getMessage().startswith("Persistent compilation cache hit for 'jit_hrnet_"):
            hits.append(record)


logging.getLogger("jax._src.compiler").setLevel(logging.DEBUG)
logging.getLogger("jax._src.compiler").addHandler(Hits())
images = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
out = {}
for batch in (2, 3):  # two programs of one row
    worker = EvalWorker(WorkerConfig(batch_size=batch, compile_cache=sys.argv[1]))
    before = len(hits)
    info = worker.load(random_spec(sys.argv[2]))
    out[batch] = {"how": info.how, "notes": info.notes, "top5": worker.top5(info.row, images)[0],
                  "cache_hit": len(hits) > before}
print(json.dumps(out))
"""


def _workers(cache):
    """Two fresh workers' loads of `SMALL` (batch 2 and 3) through JAX's persistent cache in
    `cache`, as a worker of a run with --compile-cache runs them: {batch: its load}."""
    env = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",  # every compile is kept
        JAX_PLATFORMS="cpu",
    )
    run = subprocess.run(
        [sys.executable, "-c", WORKERS, str(cache), SMALL], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    return {int(k): v for k, v in json.loads(run.stdout.splitlines()[-1]).items()}


def _compiled(cache, batch):
    name = programs.compiled_name(programs.program_key(random_spec(SMALL), batch))
    return programs.ProgramCache(cache).compiled(name, cache)


def test_swapped_compiled_code_and_a_truncated_program_are_rebuilt_once(tmp_path):
    """XLA's compiled code in the cache is checked before JAX loads it: two programs'
    executables swapped (as someone who can write the cache could) are each removed and
    compiled again with one note naming the file; a truncated program entry is rebuilt;
    the run after finds the cache healed."""
    cold = _workers(tmp_path)
    assert [cold[b]["how"] for b in (2, 3)] == ["built", "built"]
    assert [cold[b]["cache_hit"] for b in (2, 3)] == [False, False]
    assert cold[2]["notes"] == cold[3]["notes"] == []
    files = {b: _compiled(tmp_path, b) for b in (2, 3)}
    assert [len(files[b]) for b in (2, 3)] == [1, 1]  # one executable each, recorded
    a, b = files[2][0], files[3][0]
    for path in (a, b):
        record = json.loads((tmp_path / "compiled" / f"{path.name}.json").read_text())
        assert record["sha256"] == programs.file_sha256(path)

    swapped = a.read_bytes(), b.read_bytes()
    a.write_bytes(swapped[1])
    b.write_bytes(swapped[0])
    program = programs.ProgramCache(tmp_path).read(programs.program_key(random_spec(SMALL), 3))
    program.write_bytes(program.read_bytes()[:1000])  # truncated
    damaged = _workers(tmp_path)
    assert damaged[2]["how"] == "cached"
    assert damaged[2]["notes"] == [
        f"compiled code {a} does not match its record: removed, compiling again"
    ]
    assert damaged[3]["how"] == "built"
    assert damaged[3]["notes"][0].startswith(f"cache entry {program.parent} is damaged")
    assert damaged[3]["notes"][1:] == [
        f"compiled code {b} does not match its record: removed, compiling again"
    ]
    assert [damaged[x]["top5"] for x in (2, 3)] == [cold[x]["top5"] for x in (2, 3)]
    assert [damaged[x]["cache_hit"] for x in (2, 3)] == [False, False]  # compiled again
    assert a.read_bytes() != swapped[1] and b.read_bytes() != swapped[0]

    healed = _workers(tmp_path)
    assert [healed[x]["notes"] for x in (2, 3)] == [[], []]
    assert [healed[x]["how"] for x in (2, 3)] == ["cached", "cached"]
    assert [healed[x]["cache_hit"] for x in (2, 3)] == [True, True]  # checked, then loaded
    assert [healed[x]["top5"] for x in (2, 3)] == [cold[x]["top5"] for x in (2, 3)]


def test_compiled_code_without_a_record_is_not_trusted(tmp_path):
    """A file under a program's name that no worker recorded (planted, or left by a worker
    that died before recording it) is removed before the compile, named; a damaged record
    is too."""
    cache = programs.ProgramCache(tmp_path)
    name = programs.compiled_name(programs.program_key(random_spec(SMALL), 2))
    planted = tmp_path / f"jit_{name}-{'0' * 64}-cache"
    planted.write_bytes(b"code")
    other = tmp_path / f"jit_{name}-{'1' * 64}-cache"
    other.write_bytes(b"more code")
    cache.record_compiled(name, tmp_path)  # both recorded ...
    (tmp_path / "compiled" / f"{other.name}.json").write_text("{")  # ... one record damaged
    planted.unlink()
    planted.write_bytes(b"code")
    (tmp_path / "compiled" / f"{planted.name}.json").unlink()  # ... one record gone
    assert cache.check_compiled(name, tmp_path) == [
        f"compiled code {planted} has no record: removed, compiling again",
        f"compiled code {other} has a damaged record: removed, compiling again",
    ]
    assert not planted.exists() and not other.exists()
    assert cache.check_compiled(name, tmp_path) == []
