"""Benchmark: the evaluator on 1, 2 and 3 Ray nodes that share no disk, and a lost node.

Each run starts a fresh cluster on this machine (packages/hrnet-eval/tests/ray_nodes.py):
a head, and 0, 1 or 2 worker nodes in mount namespaces of their own that do not see this
script's work folder (data, weights, output, compile caches: each node's cache is its own).
The JPEGs (ImageNet sizes, class folders) are in S3 served by moto on 127.0.0.1; every node
and the job get its endpoint and fake keys from their environment. Each run is
`ray job submit -- python -m hrnet_eval` of one row with seeded random weights:

- 1 node: the head holds one logical GPU and `--node-cpus` (one worker, on the driver's node);
- 2 nodes: the head (no GPU) and a worker node with one logical GPU;
- 3 nodes: the head and two worker nodes with one logical GPU each (two workers), decode
  tasks on the node of the worker that scores their shard (the default), then anywhere
  (`--decode-placement anywhere`), for the bytes that cross nodes;
- 3 nodes, one killed: the same, with worker node 2 killed hard (SIGKILL to its raylet and
  every process it started) once the job's first shard is stored.

Reported per run: images/s of the job (`results.json` timing: first worker ready to last
shard), the whole job's seconds, bytes between nodes where the job reports them, and for the
lost node the seconds from the kill to the last shard stored, the job's seconds beside the
uninterrupted 3-node run, and the job's lines about it. Logical CPUs and GPUs are Ray's
bookkeeping: on a 2-core machine the nodes share the same two cores (name the machine).

    PYTHONPATH=packages/hrnet-keras/src:packages/hrnet-eval/src \\
        .venv/bin/python benchmarks/cluster_nodes.py [--smoke] [--json FILE]
"""

import argparse
import itertools
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "packages" / "hrnet-eval" / "tests"))

import common  # noqa: E402
from moto_s3 import MotoS3  # noqa: E402
from ray_nodes import NodeCluster  # noqa: E402

BUCKET = "bench"
RUNS = (  # label, worker nodes, head GPUs, node to kill once the first shard is stored,
    # where decode tasks run (--decode-placement)
    ("1 node", 0, 1, None, "worker-node"),
    ("2 nodes", 1, 0, None, "worker-node"),
    ("3 nodes", 2, 0, None, "worker-node"),
    ("3 nodes, decode anywhere", 2, 0, None, "anywhere"),
    ("3 nodes, one killed", 2, 0, "worker-2", "worker-node"),
)


def watch(cluster, job_id, output, model, kill=None, timeout=3600):
    """Follow job `job_id` until it ends: each log line and each stored shard with the
    seconds since the call; kill node `kill` once the first shard is stored."""
    from ray.job_submission import JobStatus

    client = cluster.head.client()
    began = time.monotonic()
    lines, shards, killed_at, seen, status = [], {}, None, 0, None
    for tick in itertools.count():
        now = time.monotonic() - began
        for path in (Path(output) / "shards" / model).glob("*.json"):
            shards.setdefault(path.name, now)
        if kill and shards and killed_at is None:
            node = next(n for n in cluster.nodes if n.name == kill)
            cluster.remove_node(node, allow_graceful=False)
            killed_at = time.monotonic() - began
        if tick % 5 == 0:  # the job's status and log every second
            status = client.get_job_status(job_id)
            text = client.get_job_logs(job_id).splitlines()
            lines += [(now, line) for line in text[seen:]]
            seen = len(text)
            if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
                return status, time.monotonic() - began, lines, shards, killed_at
            if now > timeout:
                client.stop_job(job_id)
        time.sleep(0.2)


def run(label, nodes, head_gpus, kill, placement, args, work, store):
    hidden = [] if args.shared_disk else [work]
    # A node that holds a GPU worker needs a CPU for the worker's build task besides the
    # worker's own (hrnet-eval 01fc82d: on a 1-CPU node the build task never starts).
    head_cpus = args.node_cpus if head_gpus else args.head_cpus
    cluster = NodeCluster(head_cpus=head_cpus, head_gpus=head_gpus, head_env=store.env)
    try:
        for _ in range(nodes):
            cluster.add_node(num_cpus=args.node_cpus, num_gpus=1, hidden=hidden, wait=False)
        began = time.monotonic()
        cluster.wait_for_nodes()
        started = time.monotonic() - began
        output = work / f"out-{label.replace(' ', '-').replace(',', '')}"
        workers = max(nodes, 1)
        argv = ["--models", args.model, "--data", f"s3://{BUCKET}/val", "--output", output]
        argv += ["--weights-dir", work / "weights", "--no-download", "--workers", workers]
        argv += ["--gpus-per-worker", 1, "--batch-size", args.batch_size]
        cache = args.compile_cache or work / "jax-cache"  # in `work`: each node's own
        argv += ["--shard-size", args.shard_size, "--compile-cache", cache]
        argv += ["--progress-seconds", 5, "--decode-placement", placement]
        job_id = f"cluster-nodes-{uuid.uuid4().hex[:8]}"
        submitted = cluster.head.submit(*argv, no_wait=True, submission_id=job_id)
        if submitted.returncode:
            sys.exit(f"ray job submit failed:\n{submitted.stdout}{submitted.stderr}")
        status, wall, lines, shards, killed_at = watch(cluster, job_id, output, args.model, kill)
    finally:
        cluster.shutdown()
    row = {"run": label, "nodes": nodes + 1, "workers": workers, "nodes_up_s": round(started, 1)}
    row.update(status=status.value, job_s=round(wall, 1))
    results = output / "results.json"
    if status.value == "SUCCEEDED" and results.is_file():
        timing = json.loads(results.read_text())["timing"]
        row["images"] = timing["images"]
        row["images_per_second"] = round(timing["images_per_second"], 2)
        row.update({k: v for k, v in timing.items() if "bytes" in k})
    else:
        said = [ln.strip() for _, ln in lines]
        errors = [ln for ln in said if ln.startswith("error:")]  # the evaluator's own line
        errors = errors or [ln for ln in said if re.search(r"[Ee]rror|not readable", ln)]
        row["stopped_with"] = (errors or said or ["(no log)"])[-1]
    moved = [ln.strip() for _, ln in lines if "bytes" in ln.lower()]
    if moved:
        row["bytes_lines"] = moved[-3:]
    if killed_at is not None:
        row["killed_at_s"] = round(killed_at, 1)
        after = [t for t in shards.values() if t > killed_at]
        row["shards_after_kill"] = len(after)
        if after:
            row["kill_to_last_shard_s"] = round(max(after) - killed_at, 1)
        row["lost_node_lines"] = [
            f"[{t:7.1f}] {ln}"
            for t, ln in lines
            if re.search(r"died|requeued|back in the queue|lost its|redo|redone", ln)
        ]
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="hrnet-w18")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--shard-size", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--head-cpus", type=int, default=1, help="Ray CPUs of the head beside worker nodes"
    )
    parser.add_argument("--node-cpus", type=int, default=2, help="Ray CPUs of a worker node")
    parser.add_argument(
        "--compile-cache",
        metavar="DIR",
        help="a compile cache every node sees (default: one of each node's own, empty)",
    )
    parser.add_argument(
        "--shared-disk",
        action="store_true",
        help="the worker nodes see the work folder (as nodes on a shared disk; today's only "
        "way to several nodes)",
    )
    parser.add_argument("--smoke", action="store_true", help="24 images, shards of 8")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.shard_size, args.batch_size = 24, 8, 4

    print(f"{common.machine()}; {common.cpu_model()}", flush=True)
    rows = []
    store = MotoS3().start()
    try:
        with tempfile.TemporaryDirectory(prefix="cluster-nodes-") as tmp:
            work = Path(tmp)
            data = common.write_jpegs(work / "val", args.images)
            store.upload_tree(data, BUCKET, "val")
            common.write_random_weights(args.model, work / "weights")
            for label, nodes, head_gpus, kill, placement in RUNS:
                row = run(label, nodes, head_gpus, kill, placement, args, work, store)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        store.stop()
    print(
        f"\n{args.model}, {args.images} JPEGs in S3 (moto on 127.0.0.1), shards of "
        f"{args.shard_size}; worker nodes {'on a shared disk' if args.shared_disk else 'share no disk'}; "
        f"{common.cpu_model()}, {os.cpu_count()} cores shared by all nodes"
    )
    print("| run | nodes | workers | images/s | job s | bytes between nodes | lost node |")
    print("|---|---|---|---|---|---|---|")
    plain = {r["run"]: r for r in rows}
    for r in rows:
        rate = r.get("images_per_second", f"stopped: {r.get('stopped_with', r['status'])}")
        moved = "-"
        if "bytes_between_nodes" in r:
            moved = f"{r['bytes_between_nodes'] / 1e6:.1f} of {r['scored_bytes'] / 1e6:.1f} MB"
        lost = "-"
        if "killed_at_s" in r:
            lost = f"killed at {r['killed_at_s']} s"
            if "kill_to_last_shard_s" in r:
                lost += f", {r['shards_after_kill']} shard(s) stored after it, the last "
                lost += f"{r['kill_to_last_shard_s']} s later"
            else:
                lost += ", after the last shard"
            if "job_s" in plain.get("3 nodes", {}):
                lost += f"; job {r['job_s'] - plain['3 nodes']['job_s']:+.1f} s vs 3 nodes"
        print(
            f"| {r['run']} | {r['nodes']} | {r['workers']} | {rate} | {r['job_s']} "
            f"| {moved} | {lost} |"
        )
    common.write_json(args.json, cpu=common.cpu_model(), args=vars(args), runs=rows)
    if any(r["status"] != "SUCCEEDED" for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
