"""The cluster of the `ray_nodes` fixture is what the multi-node tests take it for: two worker
nodes with a logical GPU each that see the code but none of the tests' folders, each with its
own environment, and a node killed hard seen dead by Ray."""

import json
import shutil
import subprocess
import sys

import fixture_cache
import hrnet_eval

# A driver on this machine's disk: tasks pinned to each node (NodeAffinitySchedulingStrategy,
# soft=False) report what they see; then, told a node's id on stdin, it waits until
# ray.nodes() shows that node not alive.
DRIVER = r"""
import json, os, sys, time
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], logging_level="ERROR")
node_ids, paths = json.loads(sys.argv[2]), json.loads(sys.argv[3])


@ray.remote(num_cpus=0)
def look(paths):
    import hrnet_eval
    import pyarrow.fs

    fs, path = pyarrow.fs.FileSystem.from_uri(paths["object"])  # the node's AWS_* variables
    with fs.open_input_stream(path) as f:
        object_text = f.read().decode()
    return {
        "node_id": ray.get_runtime_context().get_node_id(),
        "exists": [os.path.exists(p) for p in paths["files"]],
        "listed": {p: os.listdir(p) for p in paths["folders"]},
        "code": hrnet_eval.__file__,
        "node_name": os.environ.get("TEST_NODE_NAME"),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        "object": object_text,
    }


refs = {
    name: look.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
    ).remote(paths)
    for name, node_id in node_ids.items()
}
print(json.dumps(dict(zip(refs, ray.get(list(refs.values()))))), flush=True)
killed = sys.stdin.readline().strip()
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
    if not alive[killed]:
        break
    time.sleep(0.1)
print(json.dumps(alive), flush=True)
"""


def json_line(driver):
    """The driver's next JSON line (Ray prints lines of its own there too)."""
    for line in driver.stdout:
        if line.startswith("{"):
            return json.loads(line)
    raise AssertionError(f"the driver exited with {driver.wait()}")


def test_worker_nodes_see_code_not_test_folders_and_a_killed_node_dies(
    ray_nodes, s3_server, tmp_path
):
    head, (one, two) = ray_nodes.head, ray_nodes.nodes
    nodes = ray_nodes.wait_for_nodes()
    assert {n: nodes[n]["resources_total"].get("GPU") for n in nodes} == {
        "127.0.0.1": None,
        one.name: 1.0,
        two.name: 1.0,
    }
    # Made after the nodes started: a test's data and a fixture-cache folder.
    data = tmp_path / "data"
    data.mkdir()
    (data / "image.JPEG").write_bytes(b"jpeg")
    cached = fixture_cache.root() / "test-nodes-probe"
    cached.mkdir(exist_ok=True)
    (cached / "weights.h5").write_bytes(b"h5")
    uri = s3_server.upload_tree(data, "test-nodes")
    paths = {
        "files": [str(data / "image.JPEG"), str(cached / "weights.h5")],
        "folders": [str(tmp_path.parent), str(fixture_cache.root())],
        "object": uri + "/image.JPEG",
    }
    node_ids = {name: nodes[name]["node_id"] for name in nodes}
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, head.address, json.dumps(node_ids), json.dumps(paths)],
        env=head.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        seen = json_line(driver)
        for name, node in ((one.name, one), (two.name, two)):
            look = seen[name]
            assert look["node_id"] == node_ids[name]
            assert look["exists"] == [False, False]
            # what the driver's side made there is not (the node may hold folders of its
            # own there, made by earlier tests' jobs: a --compile-cache)
            assert tmp_path.name not in look["listed"][str(tmp_path.parent)]
            assert cached.name not in look["listed"][str(fixture_cache.root())]
            assert look["code"] == hrnet_eval.__file__
            assert look["node_name"] == name
            assert look["endpoint"] == s3_server.env["AWS_ENDPOINT_URL"]
            assert look["object"] == "jpeg"
        on_head = seen["127.0.0.1"]
        assert on_head["exists"] == [True, True] and all(on_head["listed"].values())
        assert on_head["node_name"] is None and on_head["object"] == "jpeg"

        ray_nodes.remove_node(two, allow_graceful=False)
        assert two.process is None and not two.processes()
        driver.stdin.write(node_ids[two.name] + "\n")
        driver.stdin.flush()
        alive = json_line(driver)  # nodes of earlier tests, killed or replaced, show as dead
        assert {node_ids[n]: alive[node_ids[n]] for n in node_ids} == {
            node_ids[n]: n != two.name for n in node_ids
        }
        assert set(ray_nodes.alive_nodes()) == {"127.0.0.1", one.name}
    finally:
        driver.kill()
        driver.wait()
        shutil.rmtree(cached)
