"""A Ray head for tests: 127.0.0.1 only, its own temp dir and ports, stopped by its own pids.

Never `ray stop` (it stops every Ray on the machine): the head runs as
`ray start --block` in a new session, and `stop` ends that process and every
process it started (found by parentage, or by the head's temp dir in their
command line), nothing else.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import psutil

TOKEN = secrets.token_hex(32)
PORT_OPTIONS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
    "--node-manager-port",
    "--object-manager-port",
)


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def python_env():
    """Environment for subprocesses that must import what this process imports."""
    env = dict(os.environ)
    paths = [os.path.abspath(p) for p in sys.path if p and os.path.isdir(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["KERAS_BACKEND"] = "jax"
    env.update(
        {
            # Token auth on, as Ray 2.60's default; a per-run token that clients and the
            # submitted jobs get through the environment (no ~/.ray/auth_token written).
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": TOKEN,
            "RAY_USAGE_STATS_ENABLED": "0",
            # Keep every Ray process on 127.0.0.1: without this Ray resolves the node to the
            # outside interface, even with --node-ip-address 127.0.0.1.
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
    )
    return env


def ray_cli(*args):
    """The `ray` command line of this interpreter (works without the console script)."""
    return [sys.executable, "-m", "ray.scripts.scripts", *args]


class RayProcesses:
    """One `ray start --block` in a new session, with a temp dir of its own; its processes
    found by parentage or by that temp dir in their command line, ended by their pids."""

    def __init__(self, env=None):
        # Short: Ray's unix socket paths live under it (108 bytes at most).
        self.temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
        self.env = dict(env or python_env())
        self.process = None
        self.log = None

    def _launch(self, command, log_name):
        self.log = open(os.path.join(self.temp_dir, log_name), "w")
        self.process = subprocess.Popen(
            command,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_args(self, *own):
        """`ray start` arguments: `own`, then what every node here has (blocking, on
        127.0.0.1, its temp dir, no usage stats, its CPUs, GPUs and ports)."""
        args = ["start", *own, "--block", "--node-ip-address", "127.0.0.1"]
        args += ["--temp-dir", self.temp_dir, "--disable-usage-stats"]
        args += ["--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus)]
        for option, port in self.ports.items():
            args += [option, str(port)]
        return args

    def processes(self):
        """Every live process this node started: descendants, or naming its temp dir."""
        found = {}
        try:
            if self.process is not None:
                root = psutil.Process(self.process.pid)
                found[root.pid] = root
                for child in root.children(recursive=True):
                    found[child.pid] = child
        except psutil.NoSuchProcess:
            pass
        for proc in psutil.process_iter(["pid", "cmdline"]):
            try:
                if any(self.temp_dir in part for part in proc.info["cmdline"] or ()):
                    found[proc.pid] = proc
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def stop(self):
        """SIGTERM to `ray start --block`, which stops the processes it started; SIGKILL
        to what is left after 10 s."""
        stop_all([self])

    def kill(self):
        """SIGKILL every process at once, as `Cluster.remove_node(allow_graceful=False)`
        does: none is told, none cleans up (the node's raylet and workers vanish)."""
        kill_all([self])

    def _end(self, procs):
        _signal(procs, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)
        self.process.wait(timeout=10)
        self.process = None
        self.log.close()


def stop_all(groups):
    """`RayProcesses.stop` of several at once (one wait for all)."""
    procs = {group: group.processes() for group in groups if group.process is not None}
    for group in procs:
        group.process.send_signal(signal.SIGTERM)
    _, alive = psutil.wait_procs([p for found in procs.values() for p in found], timeout=10)
    for group, found in procs.items():
        group._end([p for p in found if p in alive])


def kill_all(groups):
    """`RayProcesses.kill` of several at once: all are found, then all SIGKILLed, before
    any wait (one by one, each kill waits 1.3-1.7 s for its processes to be reaped)."""
    procs = {group: group.processes() for group in groups if group.process is not None}
    for found in procs.values():
        _signal(found, signal.SIGKILL)
    for group, found in procs.items():
        group._end(found)


def _signal(procs, signum):
    for proc in procs:
        try:
            proc.send_signal(signum)
        except psutil.NoSuchProcess:
            pass


class RayHead(RayProcesses):
    def __init__(self, *, num_cpus, num_gpus, env=None, system_config=None):
        super().__init__(env)
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.system_config = system_config  # Ray's settings for the whole cluster
        self.ports = dict(zip(PORT_OPTIONS, free_ports(len(PORT_OPTIONS))))

    @property
    def address(self):
        return f"127.0.0.1:{self.ports['--port']}"

    @property
    def dashboard(self):
        return f"http://127.0.0.1:{self.ports['--dashboard-port']}"

    def start(self, timeout=180, up=None):
        """Start the head; return once `up()` is true (default: its job API answers)."""
        args = self.start_args(
            "--head", "--dashboard-host", "127.0.0.1", "--include-dashboard", "true"
        )
        if self.system_config:
            args += ["--system-config", json.dumps(self.system_config)]
        self._launch(ray_cli(*args), "head.log")
        return self.wait(up or self._jobs_api_up, timeout)

    def wait(self, up, timeout=180):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"ray start exited with {self.process.returncode}; " f"see {self.log.name}"
                )
            if up():
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError(
            f"Ray head not up ({up.__name__}) after {timeout} s; see {self.log.name}"
        )

    def gcs_up(self):
        """Whether the head's GCS accepts connections (nodes can join)."""
        try:
            socket.create_connection(("127.0.0.1", self.ports["--port"]), timeout=1).close()
            return True
        except OSError:
            return False

    def _jobs_api_up(self):
        request = urllib.request.Request(
            self.dashboard + "/api/version", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                return "ray_version" in json.loads(response.read())
        except (OSError, ValueError):
            return False

    def job_env(self):
        return {**self.env, "RAY_ADDRESS": self.dashboard}

    def submit_command(self, *args, options=(), env_vars=None):
        """`ray job submit OPTIONS -- python -m hrnet_eval ARGS`, with this process's
        import path and `env_vars` in the job's runtime env (under Pants the packages are
        not installed)."""
        env_vars = {"PYTHONPATH": self.env["PYTHONPATH"], **(env_vars or {})}
        runtime_env = json.dumps({"env_vars": env_vars})
        return ray_cli(
            "job",
            "submit",
            "--runtime-env-json",
            runtime_env,
            *options,
            "--",
            "python",
            "-m",
            "hrnet_eval",
            *map(str, args),
        )

    def submit(self, *args, timeout=600, no_wait=False, submission_id=None, env_vars=None):
        """`ray job submit [--no-wait] -- python -m hrnet_eval ARGS`; the finished process."""
        options = []
        if no_wait:
            options.append("--no-wait")
        if submission_id:
            options += ["--submission-id", submission_id]
        cmd = self.submit_command(*args, options=options, env_vars=env_vars)
        return subprocess.run(
            cmd, env=self.job_env(), capture_output=True, text=True, timeout=timeout
        )

    def client(self):
        """The job SDK client (quicker than a `ray job` process for status/stop/logs)."""
        from ray.job_submission import JobSubmissionClient

        return JobSubmissionClient(self.dashboard, headers={"Authorization": f"Bearer {TOKEN}"})
