"""Benchmark: the resume check (hash every stored image's bytes again) against a fresh run's
decode of the same files, both as Ray tasks on a private local cluster.

Fresh decode: `decode.decode` in chunks of 64 images, one Ray task each, with the decode
tasks' options, as the scheduler submits them. Resume check: `resume.fresh_digests` on the
same items. Interleaved rounds, median; the files stay in the page cache for both (as
right after a run), so the figure is the CPU cost, not the disk's.

    .venv/bin/python benchmarks/resume_check.py [--images 2048] [--json FILE]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import common  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=None, help="local cluster CPUs (default: all)")
    parser.add_argument("--data", help="where the JPEGs are written (default: a temp folder)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()

    data = args.data or os.path.join(tempfile.gettempdir(), "hrnet-resume-bench")
    common.write_jpegs(data, args.images, processes=os.cpu_count())

    from hrnet_eval import cluster

    cluster.prepare()  # before Ray's import: resume imports it
    from hrnet_eval import resume
    from hrnet_eval.data import load_dataset
    from hrnet_eval.decode import chunks, decode

    items = list(load_dataset(data, limit=args.images).items)
    print(cluster.connect(None, num_cpus=args.cpus), flush=True)
    import ray

    task = ray.remote(decode).options(num_cpus=1)

    def fresh_decode():
        refs = [task.remote(items[s:e]) for s, e in chunks(0, len(items))]
        return [d for part in ray.get(refs) for d in part["digests"]]

    def check():
        return resume.fresh_digests(items)

    assert fresh_decode() == check()  # warm: workers started, files cached, digests equal
    times = {"decode": [], "check": []}
    for _ in range(args.rounds):
        for name, run in (("decode", fresh_decode), ("check", check)):
            began = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - began)
    ray.shutdown()
    decode_s, check_s = statistics.median(times["decode"]), statistics.median(times["check"])
    mib = sum(os.path.getsize(i.source) for i in items) / 2**20
    print(
        f"{len(items)} JPEGs ({mib:.0f} MiB): fresh decode {decode_s:.2f} s "
        f"({len(items) / decode_s:.0f} images/s), resume check {check_s:.2f} s "
        f"({len(items) / check_s:.0f} images/s) = {100 * check_s / decode_s:.1f}% of the decode"
    )
    common.write_json(
        args.json,
        images=len(items),
        mib=round(mib, 1),
        decode_s=times["decode"],
        check_s=times["check"],
        ratio=check_s / decode_s,
    )


if __name__ == "__main__":
    main()
