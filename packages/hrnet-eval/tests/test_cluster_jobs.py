"""`ray job submit -- python -m hrnet_eval` on a cluster of nodes that share no disk (the
`ray_nodes` fixture: a head and two worker nodes with a logical GPU each, in mount namespaces
of their own that hide the tests' folders), data in S3 (moto): the reference counts for class
folders and TFRecords; with a worker node killed mid-run; with the driver killed and the
same command run again; and a local path a node cannot read, refused in one line."""

import json
import re
import signal
import time
import uuid

import psutil
import pytest

from hrnet_eval import index_cache
from imageset import assert_counts, assert_predictions, read_results, shard_files
from moto_s3 import FAKE_SECRET
from tfrecords import write_tfrecord

ROW = "hrnet_w18_small.gluon_in1k"  # the small row of the image set (timm's reference counts)
BUCKET = "cluster"


@pytest.fixture(scope="module")
def cluster_data(s3_server, image_set, tmp_path_factory):
    """The image set in S3 as class folders and as tfds TFRecords: {layout: URI}."""
    records = tmp_path_factory.mktemp("records") / "imagenet2012" / "5.1.0"
    records.mkdir(parents=True)
    examples = [
        ((image_set.flat / name).read_bytes(), label, name)
        for name, label in zip(image_set.names, image_set.labels)
    ]
    for k in range(2):
        name = f"imagenet2012-validation.tfrecord-{k:05d}-of-00002"
        write_tfrecord(records / name, examples[k::2])
    return {
        "folders": s3_server.upload_tree(image_set.class_folders, BUCKET, "val"),
        "tfrecords": s3_server.upload_tree(records.parent.parent, BUCKET, "tfds"),
    }


@pytest.fixture(scope="module")
def node_cache(tmp_path_factory):
    """A --compile-cache path under the folders the worker nodes cannot see: each node has
    its own (empty at the node's start), the driver its own."""
    return tmp_path_factory.mktemp("node-cache") / "jax"


def args_of(image_set, data, output, cache, **options):
    args = ["--models", ROW, "--data", data, "--output", output, "--no-download"]
    args += ["--weights-dir", image_set.weights_dir, "--compile-cache", cache]
    for key, value in {"batch_size": 4, "shard_size": 4, "progress_seconds": 0, **options}.items():
        args += ["--" + key.replace("_", "-"), value]
    return args


def worker_nodes(ray_nodes):
    alive = ray_nodes.alive_nodes()
    return {alive[node.name]["node_id"]: node for node in ray_nodes.nodes}


def stored_nodes(output):
    return {json.loads(f.read_text())["worker"]["node"] for f in shard_files(output, ROW)}


def test_a_local_path_a_node_cannot_read_is_one_line(ray_nodes, image_set, tmp_path):
    args = args_of(image_set, image_set.class_folders, tmp_path / "out", tmp_path / "cache")
    run = ray_nodes.head.submit(*args)
    assert run.returncode != 0
    # `ray job submit` shows the job's log, then its end again in the status message
    errors = sorted({line for line in run.stdout.splitlines() if line.startswith("error:")})
    assert len(errors) == 1, run.stdout + run.stderr
    assert re.fullmatch(
        rf"error: node 127\.0\.0\.1 \([0-9a-f]{{8}}\): --data {image_set.class_folders} does "
        r"not exist there \(a local --data must be at the same path on every node: a shared "
        r"disk, or the data in S3/GCS\)( \(and 1 more\))?",
        errors[0],
    ), errors[0]
    assert "Traceback" not in run.stdout and not (tmp_path / "out").exists()


def test_s3_folders_and_tfrecords_give_the_reference_counts_on_nodes_without_the_disk(
    ray_nodes, cluster_data, image_set, tmp_path, node_cache
):
    """Weights only on the driver's node, each worker node's own program cache, data read
    from S3 by every node: the counts are the reference's for both layouts. The first run
    fetches the weights and builds on both nodes; the second, with four workers on half a
    GPU each (two per node), reads each node's cache on both nodes. The
    fake secret of the store is in no log and no result file (the nodes have it from their
    environment, not from the job)."""
    workers = worker_nodes(ray_nodes)
    logs, indexes = [], []
    runs = (("folders", "built", {}), ("tfrecords", "cached", {"gpus_per_worker": 0.5}))
    for layout, how, options in runs:
        out = tmp_path / layout
        job_id = f"hrnet-eval-nodes-{uuid.uuid4().hex[:8]}"
        cached = set(index_cache.cache_dir().glob("*.json"))
        args = args_of(image_set, cluster_data[layout], out, node_cache, shard_size=2, **options)
        run = ray_nodes.head.submit(*args, submission_id=job_id)
        log = ray_nodes.head.client().get_job_logs(job_id)  # what `ray job logs` shows
        indexes.append(len(set(index_cache.cache_dir().glob("*.json")) - cached))
        assert run.returncode == 0, run.stdout + run.stderr
        sizing = "4 worker(s) (0.5 GPU" if options else "2 worker(s) (1 GPU"
        assert sizing in log and "cluster: 3 node(s), 2 GPUs" in log
        assert_counts(out, image_set, [ROW])
        assert_predictions(out, image_set, ROW)
        # workers on the worker nodes (two per node, by GPU shares, in the second run, all
        # four ready: below); the head (no GPU) scored nothing. Which nodes score is a
        # race: the 24 images take less time to score than lies between two nodes'
        # workers getting ready, so the first node ready may score them all.
        assert stored_nodes(out) <= set(workers)
        ready = re.findall(rf"{ROW}: ready on worker \d in [\d.]+ s \((\w+)(.*)\)", log)
        assert [h for h, _ in ready] == [how] * (4 if options else 2), log
        assert all(("fetch" in steps) == (how == "built") for _, steps in ready), log
        assert re.search(r"[\d.]+ of the [\d.]+ MB of decoded images the workers read", log)
        logs.append(log)
        for path in out.rglob("*"):
            if path.is_file():
                assert FAKE_SECRET.encode() not in path.read_bytes(), path
    assert (
        f"data: {cluster_data['tfrecords']}/imagenet2012/5.1.0 (tfds data_dir), 24 images"
        in logs[1]
    )
    assert indexes == [0, 2]  # the two TFRecord files indexed by the job's own tasks
    assert all("top-1 " in log and "24/24 images (100.0%)" in log for log in logs)
    for log in logs:
        assert FAKE_SECRET not in log
        assert "\x1b" not in log, [line for line in log.splitlines() if "\x1b" in line]


def submit_and_wait_for_a_shard(head, args, output):
    """A job submitted without waiting, once its first shard is stored: its id."""
    job_id = f"hrnet-eval-nodes-{uuid.uuid4().hex[:8]}"
    head.submit(*args, no_wait=True, submission_id=job_id)
    deadline = time.monotonic() + 300
    while not shard_files(output, ROW):
        status = head.client().get_job_status(job_id)
        assert not status.is_terminal(), head.client().get_job_logs(job_id)
        assert time.monotonic() < deadline, head.client().get_job_logs(job_id)
        time.sleep(0.05)
    return job_id


def wait_for_job(head, job_id, timeout=300):
    deadline = time.monotonic() + timeout
    while not head.client().get_job_status(job_id).is_terminal():
        assert time.monotonic() < deadline, head.client().get_job_logs(job_id)
        time.sleep(0.5)
    return head.client().get_job_status(job_id), head.client().get_job_logs(job_id)


def test_a_driver_killed_mid_run_then_the_same_command_gives_the_same_results(
    ray_nodes, cluster_data, image_set, tmp_path, node_cache
):
    out = tmp_path / "out"
    args = args_of(image_set, cluster_data["folders"], out, node_cache, shard_size=2)
    job_id = submit_and_wait_for_a_shard(ray_nodes.head, args, out)
    drivers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "hrnet_eval" in " ".join(p.info["cmdline"] or ()) and str(out) in p.info["cmdline"]
    ]
    assert len(drivers) == 1, drivers
    drivers[0].send_signal(signal.SIGKILL)
    status, log = wait_for_job(ray_nodes.head, job_id)
    assert status.value == "FAILED", log
    kept = len(shard_files(out, ROW))
    assert 0 < kept, log
    run = ray_nodes.head.submit(*args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(rf"{ROW}: 12 shards of up to 2 images, \d+ already done", run.stdout)
    assert_counts(out, image_set, [ROW])
    assert_predictions(out, image_set, ROW)
    assert len(shard_files(out, ROW)) == 12


def test_a_worker_node_killed_mid_run_changes_no_count(
    ray_nodes, cluster_data, image_set, tmp_path, node_cache
):
    """The node of the worker that stored the first shard is killed hard (its raylet and
    every process it started, with the decoded shards in its object store): its shards are
    scored on the other node, each counted once; the log names the node."""
    workers = worker_nodes(ray_nodes)
    out = tmp_path / "out"
    args = args_of(image_set, cluster_data["folders"], out, node_cache, shard_size=2, batch_size=1)
    job_id = submit_and_wait_for_a_shard(ray_nodes.head, args, out)
    first = json.loads(shard_files(out, ROW)[0].read_text())["worker"]["node"]
    ray_nodes.remove_node(workers[first], allow_graceful=False)
    status, log = wait_for_job(ray_nodes.head, job_id)
    assert status.value == "SUCCEEDED", log
    assert re.search(rf"worker \d on node 127\.0\.0\.1 \({first[:8]}\) died", log), log
    assert_counts(out, image_set, [ROW])
    assert_predictions(out, image_set, ROW)
    records = [json.loads(f.read_text()) for f in shard_files(out, ROW)]
    assert len(records) == 12 and sum(r["images"] for r in records) == 24
    assert read_results(out)[1][ROW]["images"] == 24


def test_no_node_left_stops_after_the_wait_and_the_same_command_completes(
    ray_nodes, cluster_data, image_set, tmp_path, compile_cache
):
    """Both worker nodes killed hard once a shard is stored: no node can host a worker, so
    the job stops after --worker-wait-seconds, keeping what finished; with the nodes back,
    the same command completes with the reference counts. (The programs are in a cache every
    node sees, so the new nodes need not build.)"""
    out = tmp_path / "out"
    args = args_of(image_set, cluster_data["folders"], out, compile_cache, shard_size=2)
    args += ["--worker-wait-seconds", 3]
    job_id = submit_and_wait_for_a_shard(ray_nodes.head, args, out)
    # both at once: the 24 images take ~2 s to score, about what killing one node takes
    ray_nodes.kill_nodes(ray_nodes.nodes)
    status, log = wait_for_job(ray_nodes.head, job_id)
    assert status.value == "FAILED", log
    assert re.search(
        r"error: no node left can host a worker \(1 GPU, 1 CPU\): waited \d+ s "
        r"\(--worker-wait-seconds\) after the cluster lost them \(finished shards are kept",
        log,
    ), log
    kept = len(shard_files(out, ROW))
    ray_nodes.restore()
    run = ray_nodes.head.submit(*args)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(rf"{ROW}: 12 shards of up to 2 images, {kept} already done", run.stdout)
    assert_counts(out, image_set, [ROW])
    assert_predictions(out, image_set, ROW)
