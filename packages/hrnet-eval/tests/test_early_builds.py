"""Programs built beside the local cluster's start: what is built early, the lock a worker's
build task waits on, the entries it then finds, and a builder stopped mid-build."""

import fcntl
import multiprocessing
import time

import numpy as np
import pytest

from hrnet_eval import cluster, prebuild, programs
from hrnet_eval.demo import random_spec
from hrnet_eval.spec import ModelSpec

SMALL = "hrnet_w18_small.gluon_in1k"


def test_rows_without_work_or_with_entries_in_the_cache_are_not_built_early(tmp_path):
    w18, w32 = random_spec("hrnet-w18"), random_spec("hrnet-w32")
    ssld = ModelSpec("hrnet-w18-ssld", None, "keras-init-seed-1", seed=1)
    small = random_spec(SMALL)
    specs = {s.name: s for s in (w18, w32, ssld, small)}
    left = [name for name in specs if name != w32.name]  # all of W32's shards stored
    cache = programs.ProgramCache(tmp_path)
    for key in (programs.weights_key(small), programs.program_key(small, 8)):
        cache.write(key, "payload", lambda p: p.write_bytes(b"x"))
    groups = prebuild.candidates(specs, left, tmp_path, 8)
    assert [[s.name for s in group] for group in groups] == [["hrnet-w18", "hrnet-w18-ssld"]]
    # another batch size is another program: built early
    assert [[s.name for s in g] for g in prebuild.candidates(specs, left, tmp_path, 4)] == [
        ["hrnet-w18", "hrnet-w18-ssld"],
        [SMALL],
    ]


def _wait_locked(path, seconds=120):
    """Wait until another process holds the flock of `path`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            with open(path, "a") as f:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(f, fcntl.LOCK_UN)
                except BlockingIOError:
                    return
        time.sleep(0.05)
    raise AssertionError(f"nobody took {path}")


def test_a_program_built_early_is_what_a_worker_build_then_finds(tmp_path):
    """The builder holds the program's lock until it has written the entries: a worker's
    build, waiting on that lock, then has nothing left to do, and the weights are those a
    build in the worker's own task gives."""
    spec = random_spec(SMALL)
    arch = programs.architecture_key(spec)
    early = prebuild.EarlyBuilds([[spec]], tmp_path / "early", 8, cluster.builder_env())
    try:
        _wait_locked(tmp_path / "early" / "locks" / f"{arch['arch']}.lock")
        assert programs.build(tmp_path / "early", [spec], 8) == {spec.name: {}}
    finally:
        built = early.close()
    assert {"imports", "model", "fold", "export"} <= set(built[spec.name]) and early.notes == []
    programs.build(tmp_path / "direct", [spec], 8)
    entries = []
    for root in ("early", "direct"):
        cache = programs.ProgramCache(tmp_path / root)
        cache.read(programs.program_key(spec, 8))
        entries.append(programs.read_weights(cache.read(programs.weights_key(spec))))
    assert len(entries[0][0]) > 0  # trainable: every conv's kernel and bias, the head's
    for group_a, group_b in zip(*entries):
        assert len(group_a) == len(group_b)
        assert all(np.array_equal(a, b) for a, b in zip(group_a, group_b))


def test_a_builder_stopped_mid_build_leaves_no_entry_and_no_lock(tmp_path):
    spec = random_spec(SMALL)
    lock = tmp_path / "locks" / f"{programs.architecture_key(spec)['arch']}.lock"
    early = prebuild.EarlyBuilds([[spec]], tmp_path, 8, cluster.builder_env())
    _wait_locked(lock)
    assert early.close() == {}
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: raises if still held
    for folder in ("programs", "weights"):
        assert not (tmp_path / folder).exists() or not any((tmp_path / folder).iterdir())


def test_an_early_build_that_fails_is_noted_and_the_worker_build_reports_it(tmp_path):
    """A weights file the builder cannot read: the early build gives up with one note and
    no entry; the worker's own build of that row, which then takes the lock, raises."""
    bad = tmp_path / "broken.weights.h5"
    bad.write_bytes(b"not an HDF5 file")
    spec = ModelSpec(SMALL, str(bad), "sha256:" + programs.file_sha256(bad))
    arch = programs.architecture_key(spec)["arch"]
    early = prebuild.EarlyBuilds([[spec]], tmp_path / "cache", 8, cluster.builder_env())
    try:
        _wait_locked(tmp_path / "cache" / "locks" / f"{arch}.lock")
        with pytest.raises(Exception, match="broken.weights.h5"):
            programs.build(tmp_path / "cache", [spec], 8)
        deadline = time.monotonic() + 120
        while _builders() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        built = early.close()
    assert built == {}, early.notes
    assert len(early.notes) == 1 and early.notes[0].startswith(f"{SMALL}: not built early (")
    assert "broken.weights.h5" in early.notes[0]
    for folder in ("programs", "weights"):
        assert not (tmp_path / "cache" / folder).exists() or not any(
            (tmp_path / "cache" / folder).iterdir()
        )


def _builders():
    return [p for p in multiprocessing.active_children() if p.name.startswith("hrnet-eval-")]
