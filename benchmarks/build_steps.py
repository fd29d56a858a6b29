"""Benchmark: a cold build of one program (`hrnet_eval.programs.build`), step by step,
this checkout against another (`--before SRC`).

Each measurement is a fresh Python process (what a builder task is) with an empty program
cache: the rows given (default W18 and W18-SSLD, which share one program) are built from
`.weights.h5` files of seeded random weights, for JAX on the CPU, batch 8. Reported per
round and as medians: each build step (imports, model, fold, export) and the whole build.
Rounds are interleaved (before, after, before, ...).

    git worktree add /tmp/before HEAD~1
    .venv/bin/python benchmarks/build_steps.py --before /tmp/before [--rounds 3]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402

CHILD = r"""
import json, sys, time
began = time.perf_counter()
from hrnet_eval import programs
from hrnet_eval.spec import ModelSpec
cache, rows = sys.argv[1], json.loads(sys.argv[2])
specs = [ModelSpec(name=name, weights=path, key="bench-" + name) for name, path in rows]
steps = programs.build(cache, specs, 8)
print(json.dumps({"steps": steps, "seconds": round(time.perf_counter() - began, 2)}))
"""


def measure(code_root, cache, rows):
    env = common.code_env(code_root)
    result = common.child_row(["-c", CHILD, str(cache), json.dumps(rows)], env, str(code_root))
    if result is None:
        raise SystemExit(f"the build with {code_root} failed")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the old code")
    parser.add_argument("--rows", default="hrnet-w18,hrnet-w18-ssld")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="JSON file for the figures")
    args = parser.parse_args()
    names = args.rows.split(",")
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            [n, str(common.write_random_weights(n, Path(tmp) / "weights", seed=i))]
            for i, n in enumerate(names)
        ]
        for r in range(args.rounds):
            for code, root in (("before", args.before), ("after", HERE.parent)):
                result = measure(root.resolve(), Path(tmp) / f"cache-{code}-{r}", rows)
                runs[code].append(result)
                print(f"round {r + 1}: {code}: {json.dumps(result)}", flush=True)
    medians = {}
    for code, results in runs.items():
        medians[code] = {"build": statistics.median(x["seconds"] for x in results)}
        for name in names:
            for step in results[0]["steps"][name]:
                medians[code][f"{name} {step}"] = statistics.median(
                    x["steps"][name].get(step, 0.0) for x in results
                )
    cpu = common.cpu_model()
    common.write_json(args.out, cpu=cpu, rows=names, runs=runs, medians=medians)
    print(f"{cpu}, {os.cpu_count()} cores; cold build of {args.rows} (s, median of {args.rounds}):")
    for key in medians["after"]:
        before, after = medians["before"].get(key), medians["after"][key]
        ratio = f"{after / before:.2f}x" if before else ""
        print(
            f"  {key:28s} before {before if before is not None else '-':>6} after {after:6.2f} {ratio}"
        )


if __name__ == "__main__":
    main()
