"""Resume on content: decode records a digest of each item's bytes; a resumed run hashes
the stored shards' items again (Ray tasks) and redoes those whose bytes changed."""

import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from hrnet_eval import resume
from hrnet_eval.data import load_dataset
from hrnet_eval.decode import chunks, decode, join
from hrnet_eval.images import digest
from hrnet_eval.plan import Shard, Unit, make_plan
from hrnet_eval.spec import ModelSpec
from hrnet_eval.store import ShardStore
from ray_head import python_env
from records import scored

SPECS = {m: ModelSpec(m, f"/w/{m}.weights.h5", "sha256:" + m) for m in ("hrnet-w18", "hrnet-w30")}


@pytest.fixture()
def flat(photo_dir, tmp_path):
    shutil.copytree(photo_dir, tmp_path / "flat")
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n" * 24)
    return load_dataset(tmp_path / "flat", labels_file=labels), labels


def test_decode_digests_each_items_bytes_in_order(flat, tmp_path):
    dataset, labels = flat
    items = list(dataset.items[:6])
    broken = tmp_path / "flat" / os.path.basename(items[3].source)
    broken.write_bytes(b"not an image")
    parts = [decode(items[s:e], skip_corrupt=True) for s, e in chunks(0, 6, 4)]
    joined = join(parts)
    assert len(joined["names"]) == 5 and len(joined["skipped"]) == 1
    assert joined["digests"] == [digest(open(i.source, "rb").read()) for i in items]
    # A tar member's digest is that of its bytes, the same as the file's.
    with tarfile.open(tmp_path / "ILSVRC2012_img_val.tar", "w") as tar:
        for item in items[:2]:
            tar.add(item.source, arcname=os.path.basename(item.source))
    tar_items = load_dataset(tmp_path / "ILSVRC2012_img_val.tar", labels_file=labels).items
    assert decode(tar_items)["digests"] == joined["digests"][:2]


def stored_run(dataset, output, shard_size=8):
    """Plan and store every shard as a finished run would (records carry the digests)."""
    store = ShardStore(output)
    models = list(SPECS)
    planned = make_plan(
        dataset, store, SPECS, backend="jax", shard_size=shard_size, skip_corrupt=False
    )
    for shard, rows in planned.shards.items():
        decoded = decode(dataset.items[shard.start : shard.end])
        classes = [[1, 2, 3, 4, 5]] * len(decoded["labels"])
        record = scored(decoded["labels"], classes, decoded["names"], digests=decoded["digests"])
        for model in models:
            assert model in rows
            unit = Unit(model, shard)
            store.save(unit, planned.key(unit), record)
    return store


def test_same_size_and_mtime_other_pixels_is_redone(flat, tmp_path):
    dataset, _ = flat
    store = stored_run(dataset, tmp_path / "out")
    # Replace image 10 by image 11's pixels padded to its size, with its mtime (cp -p).
    a, b = dataset.items[10].source, dataset.items[11].source
    stat = os.stat(a)
    other = open(b, "rb").read()
    data = (other + b"\0" * stat.st_size)[: stat.st_size]
    with open(a, "wb") as f:
        f.write(data)
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    planned = make_plan(dataset, store, SPECS, backend="jax", shard_size=8, skip_corrupt=False)
    assert all(len(planned.done[m]) == 3 for m in SPECS) and not planned.shards  # the cheap key
    checked = planned.verify(hasher=resume.hash_items)
    assert checked.hashed == 24
    assert checked.shards == {Shard(8, 16): tuple(SPECS)}  # both rows score it again
    for model in SPECS:
        assert [r["start"] for r in checked.done[model]] == [0, 16]
    assert checked.redo == {resume.CHANGED: 2}
    assert len(planned.done["hrnet-w18"]) == 3 and not planned.shards  # a new plan: unchanged


def test_records_without_digests_are_redone():
    done = {"hrnet-w18": [{"start": 0, "end": 2}, {"start": 2, "end": 4, "digests": ["a"]}]}
    stale, hashed = resume.stale(["x"] * 4, done, hasher=lambda items: [])
    assert hashed == 0
    assert stale == {("hrnet-w18", 0, 2): resume.UNRECORDED, ("hrnet-w18", 2, 4): resume.UNRECORDED}


def test_batches_keep_each_files_items_together():
    from hrnet_eval.data import Item

    items = [Item(str(i), 0, f"/c{i // 5}", "tar", i, 1) for i in range(20)]
    parts = resume.batches(items, size=3)
    assert [len(p) for p in parts] == [5, 5, 5, 5]
    assert [i for p in parts for i in p] == items


SCRIPT = """
import json, os, sys
from hrnet_eval import cluster, resume
from hrnet_eval.data import load_dataset
os.environ.update(cluster.local_cluster_env())
import ray
ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
items = list(load_dataset(sys.argv[1], labels_file=sys.argv[2]).items)
resume.ITEMS_PER_TASK = 5
print(json.dumps(resume.fresh_digests(items)))
ray.shutdown()
"""


def test_ray_tasks_hash_as_decode_does(flat):
    dataset, labels = flat
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, dataset.root, str(labels)],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1]) == decode(dataset.items)["digests"]


JOB = """
import json, os, sys, types
from hrnet_eval import cluster
cluster.prepare()  # as python -m hrnet_eval does, before the job's modules import Ray
from hrnet_eval import job
from hrnet_eval.__main__ import parse_args
from hrnet_eval.decode import decode
from hrnet_eval.data import load_dataset
from hrnet_eval.plan import Unit, make_plan
from hrnet_eval.store import ShardStore
from hrnet_eval.weights import resolve

data, labels, weights, output, changed = sys.argv[1:6]
argv = ["--models", "hrnet-w18", "--data", data, "--labels", labels, "--weights-dir", weights,
        "--output", output, "--shard-size", "8", "--no-download", "--local-cpus", "2"]
config = parse_args(argv)
dataset = load_dataset(data, labels_file=labels)
specs = {"hrnet-w18": resolve("hrnet-w18", weights, allow_download=False)}
store = ShardStore(output)
planned = make_plan(dataset, store, specs, backend="jax", shard_size=8, skip_corrupt=False)
for shard in planned.shards:
    n, unit = shard.size, Unit("hrnet-w18", shard)
    store.save(unit, planned.key(unit), {"images": n, "top1_hits": 0, "top5_hits": 0, "labels": [0] * n,
               "top5_classes": [[1, 2, 3, 4, 5]] * n, "names": [str(i) for i in range(n)],
               "skipped": [], "seconds": 1.0,
               "digests": decode(dataset.items[shard.start:shard.end])["digests"]})
path = dataset.items[int(changed)].source
stat = os.stat(path)
data_bytes = bytearray(open(path, "rb").read())
data_bytes[-3] ^= 0xFF  # other pixels, same size
open(path, "wb").write(bytes(data_bytes))
os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
redone = []
def dispatch(self):
    for shard in self.plan.shards:
        unit = Unit("hrnet-w18", shard)
        redone.append((shard.start, shard.end, self.joined))
        self.done["hrnet-w18"].append(self.store.lookup(unit, self.plan.key(unit))[0] or {})
job.Job.dispatch = dispatch
lines = []
job.run(config, out=lambda line, **_: lines.append(line))
print(json.dumps({"lines": lines, "redone": redone}))
"""


def test_a_resumed_job_redoes_the_changed_shard(flat, tmp_path):
    from weights_files import write_weights

    dataset, labels = flat
    (tmp_path / "weights").mkdir()
    write_weights(tmp_path / "weights" / "hrnet-w18.weights.h5", "hrnet-w18")
    argv = [dataset.root, labels, tmp_path / "weights", tmp_path / "out", 12]
    run = subprocess.run(
        [sys.executable, "-c", JOB, *map(str, argv)],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["redone"] == [[8, 16, True]]  # connected once, before the check
    assert "checked the bytes of 24 stored images" in "\n".join(got["lines"])
    assert "stored shards not reused: 1 because images' bytes changed" in got["lines"]
