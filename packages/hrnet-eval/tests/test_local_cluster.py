"""The CLI's private local cluster: every listener on loopback, nothing joins without its token."""

import ipaddress
import json
import os
import subprocess
import sys
import textwrap

from ray_head import python_env

# Starts the cluster as `python -m hrnet_eval` does, runs a task (so workers exist), then
# reports the listening sockets of every process it started and whether clients join.
SCRIPT = textwrap.dedent(
    """
    import json, os, subprocess, sys
    import psutil
    from hrnet_eval import cluster

    cluster.connect(None, num_cpus=1)
    import ray

    ray.get(ray.remote(lambda: 1).remote())
    gcs = ray.get_runtime_context().gcs_address
    me = psutil.Process()
    sockets = []
    for proc in [me] + me.children(recursive=True):
        try:
            for c in proc.net_connections(kind="inet"):
                if c.status == psutil.CONN_LISTEN:
                    sockets.append([proc.name(), c.laddr.ip, c.laddr.port])
        except psutil.NoSuchProcess:
            pass
    join = "import ray; ray.init(address=%r); print('JOINED')" % gcs
    clients = {}
    for name, drop in (("no token", ("RAY_AUTH_TOKEN",)),
                       ("no token, no auth mode", ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")),
                       ("token", ())):
        env = {k: v for k, v in os.environ.items() if k not in drop}
        run = subprocess.run([sys.executable, "-c", join], env=env, capture_output=True,
                             text=True, timeout=120)
        said = (run.stderr.strip().splitlines() or [""])[-1]
        clients[name] = [run.returncode, "JOINED" in run.stdout, said]
    print("REPORT " + json.dumps({"gcs": gcs, "sockets": sockets, "clients": clients}))
    ray.shutdown()
    """
)


def test_local_cluster_is_loopback_only_and_needs_its_token(tmp_path):
    env = python_env()
    for key in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    env["HOME"] = str(tmp_path)  # a token file written to ~/.ray would show here
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert run.returncode == 0 and lines, run.stdout + run.stderr
    report = json.loads(lines[0][len("REPORT ") :])
    print(json.dumps(report, indent=1))  # the closing note quotes this
    sockets = report["sockets"]
    assert len(sockets) >= 5  # gcs, raylet, agents, workers: something was listed
    for name, ip, port in sockets:
        address = ipaddress.ip_address(ip)
        address = getattr(address, "ipv4_mapped", None) or address
        assert address.is_loopback, f"{name} listens on {ip}:{port}"
    assert report["gcs"].startswith("127.0.0.1:")
    clients = report["clients"]
    assert clients["no token"][:2] == [1, False]
    assert "AuthenticationError" in clients["no token"][2]
    assert clients["no token, no auth mode"][:2] == [1, False]
    assert clients["token"][:2] == [0, True]  # the same client with the token joins
    assert not os.path.exists(tmp_path / ".ray" / "auth_token")
