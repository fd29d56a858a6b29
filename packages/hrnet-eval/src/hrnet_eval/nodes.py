"""The cluster's nodes: what each must have locally, checked on every node before any work,
and how the log names a node.

Nodes share no disk unless the user made them: what a node reads by path must be there.
A local `--data` (also `--demo`'s photos) is read by decode tasks, which run on every node
with CPUs; the `--compile-cache` folder is each worker node's own, created there. The
weights files need not be anywhere but on the driver's node (`hrnet_eval.node_files`), and
`--output` is written by the driver only.
"""

import os
import sys
from pathlib import Path

from hrnet_eval.errors import EvalError
from hrnet_eval.permissions import PermissionsError, check_private, make_private
from hrnet_eval.storage import is_uri


class NodeError(EvalError, RuntimeError):
    """A node lacks a path it must have; the message names the node and the path."""


def current_node():
    """The Ray node id of this process's node; None outside Ray (nothing imported)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


def node_name(node_id, address=None):
    """How the log names a node: its address and the start of its Ray node id."""
    short = (node_id or "?")[:8]
    return f"node {address} ({short})" if address else f"node {short}"


def problems_here(data, compile_cache):
    """What this node lacks: `data` (a local path, or None) not readable, `compile_cache`
    (or None) not a private folder this process can create and write."""
    found = []
    if data is not None and not os.access(data, os.R_OK):
        why = "does not exist" if not os.path.lexists(data) else "is not readable"
        found.append(
            f"--data {data} {why} there (a local --data must be at the same path on every "
            "node: a shared disk, or the data in S3/GCS)"
        )
    if compile_cache:
        folder = Path(compile_cache).expanduser()
        try:
            check_private(folder, "--compile-cache")
            make_private(folder)
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError("not writable")
        except PermissionsError as exc:
            found.append(str(exc))
        except OSError as exc:
            found.append(
                f"--compile-cache {folder} cannot be created or written there "
                f"({exc.strerror or exc}): give a folder every worker node can write"
            )
    return found


def check_nodes(data, compile_cache):
    """Run `problems_here` on every alive node with CPUs or GPUs (one task each, pinned to it)
    and raise `NodeError` naming the first node and path that fail (and how many more)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    local_data = None if data is None or is_uri(str(data)) else str(data)
    if local_data is None and not compile_cache:
        return
    nodes = [
        n
        for n in ray.nodes()
        if n.get("Alive") and (n["Resources"].get("CPU", 0) or n["Resources"].get("GPU", 0))
    ]
    task = ray.remote(problems_here)
    asked = {
        node["NodeID"]: task.options(
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),
        ).remote(local_data, compile_cache)
        for node in nodes
    }
    found = []
    for node in nodes:
        name = node_name(node["NodeID"], node.get("NodeManagerAddress"))
        found += [f"{name}: {problem}" for problem in ray.get(asked[node["NodeID"]])]
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise NodeError(found[0] + more)
