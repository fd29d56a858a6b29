"""Finished shards on disk, and the plan that resumes from them."""

import json
import os

from hrnet_eval.data import Dataset, Item
from hrnet_eval.plan import Shard, Unit, make_plan
from hrnet_eval.store import ShardStore, record_sha256
from hrnet_eval.spec import ModelSpec
from records import scored


def result(images=4, top1=1, top5=2, skipped=()):
    """A record of `images` images labelled 0, `top1` of them first, `top5` in the top 5."""
    classes = [[0, 1, 2, 3, 4]] * top1 + [[1, 0, 2, 3, 4]] * (top5 - top1)
    classes += [[1, 2, 3, 4, 5]] * (images - top5)
    return scored([0] * images, classes, skipped=skipped)


def planned(data, store, specs, backend, shard_size, skip_corrupt):
    """(done, pending, the `Plan`, redo) of `make_plan`: pending as {row: [Unit]}."""
    p = make_plan(
        data, store, specs, backend=backend, shard_size=shard_size, skip_corrupt=skip_corrupt
    )
    pending = {row: [Unit(row, s) for s, rows in p.shards.items() if row in rows] for row in specs}
    return {row: list(records) for row, records in p.done.items()}, pending, p, p.redo


def dataset(root, n=10, label=0):
    """`n` image files under `root` (plan stats them), in the flat layout."""
    root.mkdir(exist_ok=True)
    items = []
    for i in range(n):
        path = root / f"ILSVRC2012_val_{i + 1:08d}.JPEG"
        if not path.exists():
            path.write_bytes(bytes([i]) * 100)
        items.append(Item(path.name, label, str(path)))
    return Dataset(tuple(items), "flat", str(root))


def test_save_is_atomic_and_lookup_checks_the_key(tmp_path):
    store = ShardStore(tmp_path)
    unit = Unit("hrnet-w18", Shard(8, 16))
    assert unit.shard.id == "00000008-00000016" and unit.shard.size == 8
    assert store.lookup(unit, {"k": 1})[0] is None
    record = store.save(unit, {"k": 1}, result(images=8))
    path = tmp_path / "shards" / "hrnet-w18" / "00000008-00000016.json"
    assert os.listdir(path.parent) == [path.name]  # no temporary file left
    assert json.loads(path.read_text()) == record
    assert (record["model"], record["start"], record["end"]) == ("hrnet-w18", 8, 16)
    assert store.lookup(unit, {"k": 1})[0] == record
    assert store.lookup(unit, {"k": 2})[0] is None  # other data, weights or backend: redo
    path.write_text('{"model": "hrnet-w18", "sta')  # cut short by something else
    assert store.lookup(unit, {"k": 1})[0] is None


def test_plan_resumes_only_matching_shards(tmp_path):
    store = ShardStore(tmp_path)
    data = dataset(tmp_path / "data", 10)
    specs = {"hrnet-w18": ModelSpec("hrnet-w18", "/w/hrnet-w18.weights.h5", "sha256:aa")}
    done, pending, first_plan, _ = planned(data, store, specs, "jax", 4, False)
    assert [(u.shard.start, u.shard.end) for u in pending["hrnet-w18"]] == [(0, 4), (4, 8), (8, 10)]
    assert done["hrnet-w18"] == []
    first, second, third = pending["hrnet-w18"]
    store.save(first, first_plan.key(first), result())
    skipped = [[data.items[5].source, "Cannot decode"]]
    store.save(second, first_plan.key(second), result(images=3, skipped=skipped))

    done, pending, _, _ = planned(data, store, specs, "jax", 4, False)
    assert [r["start"] for r in done["hrnet-w18"]] == [0]
    assert pending["hrnet-w18"] == [second, third]  # a shard that skipped images is redone
    done, pending, _, _ = planned(data, store, specs, "jax", 4, True)
    assert [r["start"] for r in done["hrnet-w18"]] == [0, 4] and pending["hrnet-w18"] == [third]

    # Another backend, other weights, or other labels: nothing reused.
    other_weights = {"hrnet-w18": ModelSpec("hrnet-w18", "/w/hrnet-w18.weights.h5", "sha256:bb")}
    for args in (
        (data, specs, "torch"),
        (data, other_weights, "jax"),
        (dataset(tmp_path / "data", 10, label=3), specs, "jax"),
    ):
        done, pending, _, _ = planned(args[0], store, args[1], args[2], 4, True)
        assert done["hrnet-w18"] == [] and len(pending["hrnet-w18"]) == 3
    # Another shard size: other ranges, so nothing reused either.
    done, pending, _, _ = planned(data, store, specs, "jax", 5, True)
    assert done["hrnet-w18"] == [] and len(pending["hrnet-w18"]) == 2


def test_images_changed_in_place_are_evaluated_again(tmp_path):
    """Same names, labels and size, new content (mtime): the shard is redone, and the
    plan says why; the other shards are reused."""
    store = ShardStore(tmp_path)
    data = dataset(tmp_path / "data", 8)
    specs = {"hrnet-w18": ModelSpec("hrnet-w18", None, "seed-0")}
    _, pending, first_plan, redo = planned(data, store, specs, "jax", 4, False)
    assert not redo
    for unit in pending["hrnet-w18"]:
        store.save(unit, first_plan.key(unit), result(images=unit.shard.size))
    changed = data.items[5].source
    stat = os.stat(changed)
    with open(changed, "r+b") as f:
        f.write(b"\xff")  # same size, other bytes
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    done, pending, _, redo = planned(data, store, specs, "jax", 4, False)
    assert [(u.shard.start, u.shard.end) for u in pending["hrnet-w18"]] == [(4, 8)]
    assert [r["start"] for r in done["hrnet-w18"]] == [0]
    assert redo == {"images changed on disk": 1}
    other = {"hrnet-w18": ModelSpec("hrnet-w18", None, "seed-1")}
    assert planned(data, store, other, "jax", 4, False)[3] == {
        "other weights": 1,
        "images changed on disk": 1,
    }
    assert planned(data, store, specs, "torch", 4, False)[3]["another backend"] == 1


def test_lookup_says_why_a_record_is_not_reused(tmp_path):
    store = ShardStore(tmp_path)
    unit = Unit("hrnet-w18", Shard(0, 4))
    assert store.lookup(unit, {"data": 1, "weights": 2}) == (None, None)
    store.save(unit, {"data": 1, "weights": 2}, result())
    assert store.lookup(unit, {"data": 1, "weights": 3}) == (None, "weights")
    assert store.lookup(unit, {"data": 1, "weights": 2})[1] is None
    store.path(unit).write_text("[1, 2")
    assert store.lookup(unit, {"data": 1, "weights": 2}) == (None, "unreadable")


def test_a_record_edited_on_disk_is_redone_naming_it(tmp_path):
    """`"top1_hits": 2` -> `0`, same size, same mtime: caught by the record's sha256; with
    the sha256 made to match, by its counts against its own top-5 classes and labels."""
    store = ShardStore(tmp_path)
    data = dataset(tmp_path / "data", 8)
    specs = {"hrnet-w18": ModelSpec("hrnet-w18", None, "seed-0")}
    _, pending, first_plan, _ = planned(data, store, specs, "jax", 4, False)
    for unit in pending["hrnet-w18"]:
        store.save(unit, first_plan.key(unit), result(images=4, top1=2, top5=3))
    path = store.path(Unit("hrnet-w18", Shard(4, 8)))
    stat = os.stat(path)
    text = path.read_text()
    path.write_text(text.replace('"top1_hits":2', '"top1_hits":0'))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert os.stat(path).st_size == stat.st_size and path.read_text() != text
    done, pending, _, redo = planned(data, store, specs, "jax", 4, False)
    assert [r["start"] for r in done["hrnet-w18"]] == [0]
    assert [(u.shard.start, u.shard.end) for u in pending["hrnet-w18"]] == [(4, 8)]
    assert redo == {f"{path} does not match its sha256 (edited or damaged on disk)": 1}

    record = json.loads(text)
    record["top1_hits"] = 0
    record["sha256"] = record_sha256(record)
    path.write_text(json.dumps(record))
    assert planned(data, store, specs, "jax", 4, False)[3] == {
        f"{path} counts top1_hits 0, top5_hits 3 where its top-5 classes and labels give 2, 3": 1
    }
    record["top5_classes"][0] = [7, 0]
    record["sha256"] = record_sha256(record)
    path.write_text(json.dumps(record))
    assert "not lists of 5 class indices" in next(
        iter(planned(data, store, specs, "jax", 4, False)[3])
    )


def test_records_of_the_previous_format_are_redone(tmp_path):
    """A record of format 2 (no sha256) is scored again once, as an older record format."""
    store = ShardStore(tmp_path)
    data = dataset(tmp_path / "data", 4)
    specs = {"hrnet-w18": ModelSpec("hrnet-w18", None, "seed-0")}
    _, pending, first_plan, _ = planned(data, store, specs, "jax", 4, False)
    unit = pending["hrnet-w18"][0]
    record = store.save(unit, {**first_plan.key(unit), "format": 2}, result())
    del record["sha256"]
    store.path(unit).write_text(json.dumps(record))
    done, pending, _, redo = planned(data, store, specs, "jax", 4, False)
    assert done["hrnet-w18"] == [] and pending["hrnet-w18"] == [unit]
    assert redo == {"an older record format": 1}
