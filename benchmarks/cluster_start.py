"""Benchmark: what the evaluator's private local Ray cluster costs to start.

Each measurement is a fresh process that calls `hrnet_eval.cluster.connect()` (what
`python -m hrnet_eval` does without RAY_ADDRESS), then runs one task as the decode
tasks run (no runtime environment: in one of Ray's idle workers), and reports: seconds to
`connect()` returned, seconds to that task's result, and the processes the cluster
runs then (the driver's descendants). Variants (Ray settings as environment variables, `RAY_<config name>`):

- default: Ray's defaults (the raylet prestarts one idle Python worker per CPU);
- no-prestart: `RAY_enable_worker_prestart=0` (no idle workers started ahead).

Rounds interleave the variants. Each measurement then starts the JAX worker actor
(`EvalWorker`, 1 CPU) twice, in the order of the round, and reports seconds from asking
for it to its first reply: with its environment as a runtime_env of its own (the code
before 2026-12-04: Ray starts a new process for it) and set by the worker itself
(`WorkerConfig(env=...)`: Ray gives it one of its idle workers), and a decode task
again, plain (now) and with the decode tasks' runtime_env of before 2026-12-05, and a build
task's start, with the builder's runtime_env (before 2026-12-06) and setting its environment
itself with `max_calls=1` (now). `--profile` adds where
`connect()` spent its time (cumulative seconds of Ray's start steps, under cProfile).

    .venv/bin/python benchmarks/cluster_start.py [--rounds 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

VARIANTS = {"default": {}, "no-prestart": {"RAY_enable_worker_prestart": "0"}}
CHILD = r"""
import json, os, sys, time
began, order, profile = float(sys.argv[1]), sys.argv[2].split(","), sys.argv[3] == "1"
from hrnet_eval import cluster
if profile:
    import cProfile, pstats
    profiler = cProfile.Profile()
    profiler.enable()
cluster.connect()
connected = time.time() - began
steps = {}
if profile:
    profiler.disable()
    wanted = ("start_head_processes", "start_gcs_server", "start_monitor", "start_api_server",
              "start_ray_processes", "start_raylet", "get_node", "connect", "<module>")
    for (path, _, name), row in pstats.Stats(profiler).stats.items():
        if name in wanted and os.sep + "ray" + os.sep in path:
            if name == "<module>" and not path.endswith(os.path.join("ray", "__init__.py")):
                continue
            label = "import ray" if name == "<module>" else name
            steps[label] = round(max(steps.get(label, 0), row[3]), 2)
import psutil, ray
task = ray.remote(lambda: os.getpid())  # as the decode tasks run: in an idle worker
ray.get(task.remote())
first_task = time.time() - began
# This cluster's processes: the driver's descendants (another cluster's are not counted).
names = sorted(p.name() for p in psutil.Process().children(recursive=True))
idle = sum(1 for n in names if n == "ray::IDLE")
# A decode task again, plain and with the runtime_env the decode tasks had before
# 2026-12-05 (for which Ray starts a new process): seconds from asking to its result.
old_decode_env = {"CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu",
                  "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1"}
decode = {}
for how in order:
    remote = task.options(runtime_env={"env_vars": old_decode_env}) if how == "runtime_env" else task
    asked = time.time()
    ray.get(remote.remote())
    decode[how] = round(time.time() - asked, 2)
# A build task (up to its first line of work): with the builder's environment as a
# runtime_env (before 2026-12-06) and as the build task now takes it (set by the task
# itself, max_calls=1); "idle_pid": whether Ray ran it in one of its idle workers.
from hrnet_eval.cluster import apply_env
idle_pids = {p.pid for p in psutil.Process().children(recursive=True) if p.name() == "ray::IDLE"}
def build_probe(env):
    apply_env(env)
    return os.getpid()
probe = ray.remote(build_probe)
probe_once = ray.remote(max_calls=1)(build_probe)
build = {}
for how in order:
    if how == "runtime_env":
        remote = probe.options(num_cpus=1, runtime_env={"env_vars": cluster.builder_env()})
        args = ({},)
    else:
        remote, args = probe_once.options(num_cpus=1), (cluster.builder_env(),)
    asked = time.time()
    pid = ray.get(remote.remote(*args))
    build[how] = round(time.time() - asked, 2)
    build[how + "_idle_pid"] = pid in idle_pids
from hrnet_eval.config import WorkerConfig
from hrnet_eval.worker import EvalWorker
env = cluster.worker_env("jax", 0, None, 1)
actor = {}
for how in order:
    options, config = {"num_cpus": 1, "max_restarts": 0}, WorkerConfig(batch_size=8)
    if how == "runtime_env":
        options["runtime_env"] = {"env_vars": env}
    else:
        config = WorkerConfig(batch_size=8, env=env)
    asked = time.time()
    worker = ray.remote(EvalWorker).options(**options).remote(config)
    ray.get(worker.describe.remote())
    actor[how] = round(time.time() - asked, 2)
    ray.kill(worker)
print("RESULT " + json.dumps({"connect_s": round(connected, 2), "first_task_s": round(first_task, 2),
                              "processes": len(names), "idle_workers": idle,
                              "actor_runtime_env_s": actor["runtime_env"],
                              "actor_own_env_s": actor["own_env"],
                              "decode_task_runtime_env_s": decode["runtime_env"],
                              "decode_task_plain_s": decode["own_env"],
                              "build_task_runtime_env_s": build["runtime_env"],
                              "build_task_own_env_s": build["own_env"],
                              "build_task_own_env_in_idle_worker": build["own_env_idle_pid"],
                              "connect_steps": steps}))
ray.shutdown()
"""


def measure(extra_env, order, profile):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(extra_env)
    began = time.time()
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(began), ",".join(order), str(int(profile))],
        env=env,
        capture_output=True,
        text=True,
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
    if run.returncode or line is None:
        raise SystemExit(f"failed:\n{run.stdout}\n{run.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="time Ray's start steps")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cluster_start_cpu.json")
    args = parser.parse_args()
    cpu = common.cpu_model()
    runs = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for i, (name, extra) in enumerate(VARIANTS.items()):
            order = ["runtime_env", "own_env"][:: 1 if (r + i) % 2 == 0 else -1]
            runs[name].append(measure(extra, order, args.profile))
            print(f"round {r + 1}: {name}: {json.dumps(runs[name][-1])}", flush=True)
    summary = {
        name: {
            key: statistics.median(x[key] for x in values)
            for key in (
                "connect_s",
                "first_task_s",
                "processes",
                "actor_runtime_env_s",
                "actor_own_env_s",
                "decode_task_runtime_env_s",
                "decode_task_plain_s",
                "build_task_runtime_env_s",
                "build_task_own_env_s",
            )
        }
        for name, values in runs.items()
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {"cpu": cpu, "cores": os.cpu_count(), "runs": runs, "median": summary}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{cpu}, {os.cpu_count()} cores (median of {args.rounds}):")
    for name, figures in summary.items():
        print(f"  {name:12s} {json.dumps(figures)}")


if __name__ == "__main__":
    main()
