"""Benchmark: how long a CPU worker takes to get one row ready, cold and warm, before and after.

Each measurement is a fresh Python process (what a Ray worker is), timed from its
start to the row's first batch scored: imports, build (or cache read), compile,
one forward pass. The row is W18 with the demo's seeded weights, batch 8, JAX
on the CPU, through `EvalWorker.load` outside Ray (a missing program is built
in-process, where the CLI runs the same steps in a builder task), with
--compile-cache's folder as JAX's persistent cache, as a run's worker has it.
cold: empty program and compilation caches; warm: the caches of the cold run.

- "after": this checkout (`EvalWorker(WorkerConfig(...))`: programs for every platform,
  compiled code checked against its record).
- "before": another checkout (`--before SRC`, e.g. a git worktree of 6a96040, whose
  `EvalWorker` takes keyword arguments and whose programs are keyed by device).

Rounds are interleaved (before cold, before warm, after cold, after warm, ...);
each figure is reported per round, with the median.

    .venv/bin/python benchmarks/worker_ready.py --before /tmp/before [--rounds 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

CHILD = {
    "after": r"""
import json, sys, time
from hrnet_eval.config import WorkerConfig
from hrnet_eval.demo import random_spec
from hrnet_eval.worker import EvalWorker
worker = EvalWorker(WorkerConfig(backend="jax", batch_size=8, compile_cache=sys.argv[1]))
info = worker.load(random_spec("hrnet-w18"))
print("STEPS", json.dumps(info.steps))
print("RESULT", time.time(), info.how, "keras" in sys.modules, "tensorflow" in sys.modules)
""",
    "before": r"""
import json, sys, time
from hrnet_eval.demo import random_spec
from hrnet_eval.worker import EvalWorker
worker = EvalWorker(backend="jax", batch_size=8, cache_dir=sys.argv[1])
info = worker.load(random_spec("hrnet-w18"))
print("STEPS", json.dumps(info["steps"]))
print("RESULT", time.time(), info["how"], "keras" in sys.modules, "tensorflow" in sys.modules)
""",
}


def measure(mode, code_root, cache):
    """Seconds from process start to the row ready, and what the child says."""
    env = common.code_env(code_root, JAX_COMPILATION_CACHE_DIR=str(cache))
    began = time.time()
    run = subprocess.run(
        [sys.executable, "-c", CHILD[mode], str(cache)],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT")), None)
    if run.returncode or line is None:
        raise SystemExit(f"{mode} failed:\n{run.stdout}\n{run.stderr}")
    _, ready, how, keras, tf = line.split()
    steps = next((x[6:] for x in run.stdout.splitlines() if x.startswith("STEPS ")), "{}")
    return {
        "seconds": round(float(ready) - began, 2),
        "steps": json.loads(steps),
        "how": how,
        "imports_keras": keras == "True",
        "imports_tensorflow": tf == "True",
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the old code")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "worker_ready_cpu.json")
    args = parser.parse_args()
    cpu = common.cpu_model()
    runs = {f"{code} {state}": [] for code in ("before", "after") for state in ("cold", "warm")}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for code, root in (("before", args.before), ("after", HERE.parent)):
                cache = Path(tmp) / f"{code}-{r}"
                for state in ("cold", "warm"):
                    result = measure(code, root.resolve(), cache)
                    runs[f"{code} {state}"].append(result)
                    print(f"round {r + 1}: {code} {state}: {json.dumps(result)}", flush=True)
    summary = {key: statistics.median(x["seconds"] for x in values) for key, values in runs.items()}
    report = {"cpu": cpu, "cores": os.cpu_count(), "runs": runs, "median_seconds": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{cpu}, {os.cpu_count()} cores; W18 worker ready (s, median of {args.rounds}):")
    for key, value in summary.items():
        print(f"  {key:12s} {value:7.2f}")
    base = summary["before warm"]
    print(f"  warm: after / before = {summary['after warm'] / base:.3f}")
    print(f"  cold: after / before = {summary['after cold'] / summary['before cold']:.3f}")


if __name__ == "__main__":
    main()
