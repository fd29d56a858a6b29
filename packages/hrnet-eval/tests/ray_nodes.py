"""Ray worker nodes on this one machine, joined to a test head (`ray_head.RayHead`), that
share no disk with the driver: each node runs in a mount namespace of its own
(`unshare -m`, root) where every folder in `hidden` is an empty tmpfs, so that its raylet and
every worker it starts see none of the files there (the test's data, weights, output).

Each node is `ray start --address HEAD --block` with ports and a `--temp-dir` of its own
(Ray 2.60 takes `--temp-dir` per node; without it a node uses the head's path), logical GPUs
(`--num-gpus`), the head's token through the environment, and extra variables of its own
(e.g. `AWS_ENDPOINT_URL` and keys). `RayNode.kill` is a lost machine (SIGKILL to every
process the node started); `stop` a clean one. Never `ray stop`.

Facts (Ray 2.60.0, this 2-core AMD EPYC machine, busy with other test runs; 2026-12-07):

- Start: the head answers its job API 4-9 s after `ray start --head`; worker nodes are
  ALIVE in the head's state API 7-23 s after the head's GCS answers (two started together;
  7 s at load 4, 10-23 s at load 7-11). `NodeCluster` starts the nodes once the head's GCS
  port answers, while its dashboard is still starting. conftest's `node_cluster` (moto, the
  head, two nodes) is up in 12 s at load 3, 20-34 s at load 8-11.
- A node killed hard (SIGKILL to its raylet and every process it started; `kill` returns
  when all are reaped, 1.3-1.7 s) is marked DEAD by the GCS health check of its raylet:
  with Ray's defaults (`health_check_period_ms` 3000, `health_check_failure_threshold` 5)
  15.3 s after `kill` returned; with `FAST_HEALTH_CHECK` on the head (`ray start --head
  --system-config`, or the same names as `RAY_health_check_*` variables in the head's
  environment: both work) it is DEAD by the time `kill` returns. Its record stays, DEAD,
  with "health check failed due to missing too many heartbeats".
- Objects in the killed node's object store (read later from a driver on the head, with
  `ray.wait(fetch_local=False)` before the kill): a task's return value is made again from
  its lineage (the task runs again on a live node: read in 0.1 s) if the task may run
  elsewhere (default or soft affinity); pinned with `soft=False` to the dead node the read
  raises `TaskUnschedulableError`; with `max_retries=0` `ObjectReconstructionFailedError`;
  an actor method's return (actor not restartable) `ObjectReconstructionFailedError`; a
  `ray.put` made by a task on the dead node `OwnerDiedError` (its owner died); a value
  already copied to the driver's node is read from that copy.
- `ray job submit` to the head runs the job's driver on the head node (`JobInfo
  .driver_node_id` is the head's node id), so the driver sees the head's disk.
"""

import json
import os
import shlex
import sys
import time
import urllib.request

from ray_head import PORT_OPTIONS, TOKEN, RayProcesses, free_ports, kill_all, stop_all

# A worker node takes the head's address instead of these.
HEAD_ONLY = ("--port", "--dashboard-port", "--ray-client-server-port")
NODE_PORT_OPTIONS = tuple(o for o in PORT_OPTIONS if o not in HEAD_ONLY)
# The head's settings that make a node killed hard DEAD in about a second (GCS health checks
# of each raylet: every 200 ms, dead after 3 failures in a row; defaults 3000 ms and 5).
FAST_HEALTH_CHECK = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 200,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


# `python_env()` sets RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which keeps Ray's address
# resolution on 127.0.0.1: with it on (Linux's default), Ray 2.60 replaces 127.0.0.1 in
# `--address` and `--node-ip-address` by the outside interface's address, where the head does
# not listen, and a node's agents listen on every interface. With it off, `ray start
# --address` refuses to join ("Multi-node Ray clusters are not supported on Windows and OSX").
# So a node's `ray start` runs with it off, and only the CLI's own refusal sees it on.
JOIN = (
    "import sys, types; import ray._private.ray_constants as c; import ray.scripts.scripts as s; "
    "s.ray_constants = types.SimpleNamespace(**{**vars(c), 'ENABLE_RAY_CLUSTER': True}); "
    "sys.argv[0] = 'ray'; s.main()"
)


def hide_and_exec(hidden, command):
    """A shell line that mounts an empty tmpfs over each folder of `hidden` (in the mount
    namespace it runs in), then becomes `command`."""
    mounts = [f"mount -t tmpfs -o mode=1777 hrnet-hidden {shlex.quote(p)}" for p in hidden]
    return " && ".join([*mounts, "exec " + shlex.join(command)])


class RayNode(RayProcesses):
    """A worker node of `head` named `name` (its `node_name` in Ray's state API)."""

    def __init__(
        self,
        head,
        name,
        *,
        num_cpus,
        num_gpus=0,
        hidden=(),
        env=None,
        object_store_memory=200 * 1024**2,
    ):
        super().__init__({**head.env, **(env or {})})
        self.head, self.name = head, name
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.object_store_memory = object_store_memory
        self.hidden = [os.path.abspath(p) for p in hidden]
        self.ports = dict(zip(NODE_PORT_OPTIONS, free_ports(len(NODE_PORT_OPTIONS))))
        if self.hidden and os.geteuid() != 0:
            raise RuntimeError("hiding folders from a node needs root (`unshare --mount`)")
        needed = [self.temp_dir, *self.env.get("PYTHONPATH", "").split(os.pathsep)]
        for folder in self.hidden:
            if not os.path.isdir(folder):
                raise ValueError(f"hidden folder {folder} does not exist: create it first")
            for path in filter(None, needed):
                if os.path.commonpath([folder, os.path.abspath(path)]) == folder:
                    raise ValueError(f"hidden folder {folder} holds {path}, which the node needs")

    def command(self):
        args = self.start_args(
            "--address",
            self.head.address,
            "--node-name",
            self.name,
            "--object-store-memory",
            str(self.object_store_memory),
        )
        command = [sys.executable, "-c", JOIN, *args]
        if not self.hidden:
            return command
        script = hide_and_exec(self.hidden, command)
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]

    def start(self):
        """Start the node; returns at once (`wait_for_nodes` waits until it is seen)."""
        self._launch(self.command(), f"{self.name}.log")
        return self

    def check_running(self):
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"node {self.name} exited with {self.process.returncode}; see {self.log.name}"
            )


def list_nodes(head):
    """Every node the head's GCS knows, alive or dead: Ray's state API records (`node_id`,
    `node_name`, `state` "ALIVE"/"DEAD", `is_head_node`, `resources_total`, ...)."""
    request = urllib.request.Request(
        head.dashboard + "/api/v0/nodes?limit=1000&detail=1",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["data"]["result"]["result"]


def alive_nodes(head):
    return {n["node_name"]: n for n in list_nodes(head) if n["state"] == "ALIVE"}


def wait_for_nodes(head, names, nodes=(), timeout=60):
    """Wait until exactly the nodes named `names` (the head's name is 127.0.0.1) are alive;
    returns {name: record}. Raises if one of `nodes` exited, or at `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for node in nodes:
            node.check_running()
        try:
            found = alive_nodes(head)
        except (OSError, ValueError, KeyError):  # its dashboard not up yet
            found = {}
        if set(found) == set(names):
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"alive after {timeout} s: {sorted(found)}, not {sorted(names)}")
        time.sleep(0.2)


class NodeCluster:
    """A head and worker nodes on this machine (as `ray.cluster_utils.Cluster`, with
    processes of their own and no shared disk): `add_node`, `remove_node`, `restore`,
    `shutdown`."""

    def __init__(
        self, *, head_cpus=1, head_gpus=0, head_env=None, hidden=(), system_config=FAST_HEALTH_CHECK
    ):
        from ray_head import RayHead, python_env

        self.hidden = list(hidden)
        self.head = RayHead(
            num_cpus=head_cpus,
            num_gpus=head_gpus,
            env={**python_env(), **(head_env or {})},
            system_config=system_config,
        )
        self.nodes = []
        self.head.start(up=self.head.gcs_up)  # nodes join while its dashboard starts

    @property
    def node_names(self):
        return ["127.0.0.1"] + [n.name for n in self.nodes if n.process is not None]

    def add_node(self, *, wait=True, name=None, **options):
        """Start a worker node (`RayNode` options; `hidden` defaults to the cluster's)."""
        options.setdefault("hidden", self.hidden)
        node = RayNode(self.head, name or f"worker-{len(self.nodes) + 1}", **options).start()
        node.options = options
        self.nodes.append(node)
        if wait:
            self.wait_for_nodes()
        return node

    def wait_for_nodes(self, timeout=60):
        """{name: state record} once exactly the head and the running nodes are alive."""
        return wait_for_nodes(self.head, self.node_names, self.nodes, timeout)

    def alive_nodes(self):
        return alive_nodes(self.head)

    def node_id(self, node):
        return alive_nodes(self.head)[node.name]["node_id"]

    def remove_node(self, node, allow_graceful=True):
        """Stop `node` (SIGTERM first) or, with `allow_graceful=False`, kill it hard (the
        node stays in `nodes`, not running, until `restore`)."""
        node.stop() if allow_graceful else node.kill()

    def kill_nodes(self, nodes):
        """Kill `nodes` hard at the same moment (lost machines; they stay in `nodes`, not
        running, until `restore`)."""
        kill_all(nodes)

    def restore(self, timeout=60):
        """Start again (a new Ray node of the same name and options) every node that was
        removed or exited; wait until all are alive."""
        for i, node in enumerate(self.nodes):
            if node.process is None or node.process.poll() is not None:
                node.stop()
                self.nodes[i] = RayNode(self.head, node.name, **node.options).start()
                self.nodes[i].options = node.options
        return self.wait_for_nodes(timeout)

    def shutdown(self):
        """Stop the nodes and the head, all at once (`RayProcesses.stop`)."""
        stop_all([*self.nodes, self.head])
