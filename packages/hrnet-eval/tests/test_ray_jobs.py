"""End to end on a real Ray head (127.0.0.1, 2 logical GPUs): `ray job submit --
python -m hrnet_eval ...` against counts of the mmpretrain reference on the same files."""

import csv
import json
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid

import psutil
import pytest

from imageset import assert_counts, assert_predictions, read_results, shard_files
from ray_head import python_env

W18, SSLD = "hrnet-w18", "hrnet-w18-ssld"
TIMM_ROW = "hrnet_w18_small.gluon_in1k"


def job_args(image_set, output, compile_cache, *, models=(W18,), data=None, **options):
    """CLI arguments of an evaluation of the test image set."""
    args = [
        "--models",
        ",".join(models),
        "--data",
        data or image_set.class_folders,
        "--weights-dir",
        image_set.weights_dir,
        "--output",
        output,
        "--no-download",
        "--compile-cache",
        compile_cache,
        "--progress-seconds",
        "0",
    ]
    defaults = {"batch_size": 4, "shard_size": 8}
    for key, value in {**defaults, **options}.items():
        args += ["--" + key.replace("_", "-"), value]
    return args


def test_job_reproduces_reference_counts(ray_head, image_set, tmp_path, compile_cache):
    out = tmp_path / "out"
    run = ray_head.submit(
        *job_args(
            image_set,
            out,
            compile_cache,
            models=(W18, SSLD),
            workers=2,
            gpus_per_worker=1,
            rows_per_worker=1,
        )
    )
    assert run.returncode == 0, run.stdout + run.stderr
    # The reference's predictions differ by image and the labels give hits of both kinds.
    assert len({tuple(t) for t in image_set.top5[W18]}) == 24
    assert 0 < image_set.counts[W18]["top1_hits"] < image_set.counts[W18]["top5_hits"] < 24
    rows = assert_counts(out, image_set, (W18, SSLD))
    for model in (W18, SSLD):
        assert_predictions(out, image_set, model)

    row = rows[W18]
    assert row["top1"] == pytest.approx(100.0 * image_set.counts[W18]["top1_hits"] / 24, abs=1e-3)
    assert (row["published_top1"], row["published_top5"]) == (76.75, 93.44)
    assert (row["img_size"], row["crop_pct"], row["interpolation"]) == (224, 0.875, "bilinear")
    assert row["params"] == 21295164 and row["backend"] == "jax"
    assert row["seconds"] > 0 and row["images_per_second"] > 0

    with open(out / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == [
        "model",
        "img_size",
        "top1",
        "top1_err",
        "top5",
        "top5_err",
        "param_count",
        "crop_pct",
        "interpolation",
        "weights",
        "source_sha256",
    ]
    assert {r["model"] for r in table} == {W18, SSLD}
    markdown = (out / "results.md").read_text()
    # Reference weights saved by the test, not the published file: never shown as the table.
    assert (
        "| HRNet-W18\\* (**unpublished weights**) | 21.30 | 4.33 | 224/256 bilinear | 76.75 |"
    ) in markdown
    assert row["published_weights"] is False
    assert "unpublished weights, source not recorded" in markdown
    # The measured columns, from the reference's counts (not from the row they were written from).
    expected = image_set.counts[W18]
    top1, top5 = (100.0 * expected[k] / expected["images"] for k in ("top1_hits", "top5_hits"))
    assert (
        f"| 76.75 | {top1:.2f} | {top1 - 76.75:+.2f} | 93.44 | {top5:.2f} | {top5 - 93.44:+.2f} "
        f"| {expected['images']} |"
    ) in markdown
    assert "HRNet-W18 (ssld)\\*" in markdown

    # Three shards per model, each on a worker holding logical GPUs.
    for model in (W18, SSLD):
        files = shard_files(out, model)
        assert [f.stem for f in files] == [
            "00000000-00000008",
            "00000008-00000016",
            "00000016-00000024",
        ]
    records = [json.loads(f.read_text()) for f in shard_files(out, W18)]
    assert all(r["worker"]["gpu_ids"] for r in records)
    # Progress lines with a rate and an ETA reach the job's log.
    assert "images/s, ETA" in run.stdout
    assert "24/24 images (100.0%)" in run.stdout


def test_three_workers_one_killed_mid_run(ray_head, image_set, tmp_path, compile_cache):
    """3 workers on half a GPU each, each holding both rows, another shard and batch size
    (programs built anew for it); one worker is killed inside a shard: its shards are
    redone by another worker, counted once, same counts."""
    out = tmp_path / "out"
    args = job_args(
        image_set,
        out,
        compile_cache,
        models=(W18, SSLD),
        workers=3,
        gpus_per_worker=0.5,
        shard_size=2,
        batch_size=1,
    )
    cmd = ray_head.submit_command(*args)
    job = subprocess.Popen(
        cmd, env=ray_head.job_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    victim = None
    deadline = time.monotonic() + 400
    while victim is None and job.poll() is None and time.monotonic() < deadline:
        if shard_files(out, W18):  # workers are warm: kill one inside a shard
            for proc in ray_head.processes():
                try:
                    if "ray::EvalWorker.score" in " ".join(proc.cmdline()):
                        proc.send_signal(signal.SIGKILL)
                        victim = proc.pid
                        break
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.05)
    stdout, _ = job.communicate(timeout=400)
    assert victim is not None, "no worker was caught inside a shard:\n" + stdout
    assert job.returncode == 0, stdout
    assert "3 worker(s) (0.5 GPU" in stdout
    # Rows score as soon as each is ready: the killed call held one row or both.
    lost = re.search(
        r"died during (hrnet-w18(?:-ssld)?(?:, hrnet-w18-ssld)?) shard (\d{8}-\d{8})", stdout
    )
    assert lost, stdout
    lost_rows, lost_shard = lost.group(1).split(", "), lost.group(2)
    assert_counts(out, image_set, (W18, SSLD))
    pids = set()
    for model in (W18, SSLD):
        assert_predictions(out, image_set, model)
        records = {f.stem: json.loads(f.read_text()) for f in shard_files(out, model)}
        assert len(records) == 12 and sum(r["images"] for r in records.values()) == 24
        if model in lost_rows:  # redone by another worker
            assert records[lost_shard]["worker"]["pid"] != victim
        pids |= {r["worker"]["pid"] for r in records.values()}
    # the shards went to more than one worker (not necessarily each row's: a worker ready
    # first may score all of one row before the others have loaded)
    assert len(pids) >= 2


def test_one_worker_takes_the_row_groups_in_turn(ray_head, image_set, tmp_path, compile_cache):
    """Fewer workers than row groups, more shards than the decode window holds: the one
    worker scores its group until the window fills with shards that wait for the other
    group, then takes that group (no deadlock); every shard is decoded once, counts hold."""
    out = tmp_path / "out"
    run = ray_head.submit(
        *job_args(
            image_set,
            out,
            compile_cache,
            models=(W18, SSLD),
            workers=1,
            gpus_per_worker=1,
            rows_per_worker=1,
            shard_size=1,
        ),
        timeout=500,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert_counts(out, image_set, (W18, SSLD))
    for model in (W18, SSLD):
        assert len(shard_files(out, model)) == 24


def test_stopped_job_resumes_then_names_a_corrupt_image_and_skips_it(
    ray_head, image_set, tmp_path, compile_cache
):
    """`ray job stop` mid-run keeps the finished shards; the same command resumes, skips
    them and fails on a truncated JPEG naming it (one error line, shards kept, no results);
    with `--skip-corrupt` it resumes again and counts the other 23 images as the reference
    does. One worker, the flat layout with a labels file, shards of 2, the broken image in
    the last shard. (One job for what two tests checked: a stopped job resumed, a corrupt
    image named then skipped.)"""
    from ray.job_submission import JobStatus

    data = tmp_path / "flat"
    shutil.copytree(image_set.flat, data)
    broken = data / image_set.names[-1]  # in the last shard, past the decode window
    broken.write_bytes(broken.read_bytes()[:600])  # a truncated JPEG
    out = tmp_path / "out"
    args = job_args(
        image_set, out, compile_cache, data=data, workers=1, gpus_per_worker=1, shard_size=2,
        batch_size=1,
    )  # fmt: skip
    args += ["--labels", image_set.labels_file]
    job_id = f"hrnet-eval-stop-{uuid.uuid4().hex[:8]}"
    submitted = ray_head.submit(*args, no_wait=True, submission_id=job_id)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    client = ray_head.client()
    deadline = time.monotonic() + 400
    while not shard_files(out, W18) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shard_files(out, W18), client.get_job_logs(job_id)
    assert client.stop_job(job_id)
    while not client.get_job_status(job_id).is_terminal() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert client.get_job_status(job_id) == JobStatus.STOPPED
    assert "stopped: finished shards are kept" in client.get_job_logs(job_id)
    kept = {f: f.stat().st_mtime_ns for f in shard_files(out, W18)}
    assert 0 < len(kept) < 12

    failed = ray_head.submit(*args)
    assert failed.returncode != 0
    assert f"12 shards of up to 2 images, {len(kept)} already done in" in failed.stdout
    # (`ray job submit` prints the job's log, then its tail again in the failure summary.)
    errors = {line for line in failed.stdout.splitlines() if line.startswith("error: ")}
    assert len(errors) == 1, failed.stdout
    (error,) = errors
    assert f"Cannot decode image {broken}" in error and "--skip-corrupt" in error
    assert len(shard_files(out, W18)) < 12 and not (out / "results.json").exists()

    resumed = ray_head.submit(*args, "--skip-corrupt")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "already done in" in resumed.stdout
    assert f"skipped ({W18}): Cannot decode image {broken}" in resumed.stdout
    _, rows = read_results(out)
    row = rows[W18]
    expected = image_set.counts_without(W18, {broken.name})
    assert (row["top1_hits"], row["top5_hits"], row["images"]) == (
        expected["top1_hits"],
        expected["top5_hits"],
        23,
    )
    assert [where for where, _ in row["skipped"]] == [str(broken)]
    assert "denominator 23 images" in (out / "results.md").read_text()
    assert_predictions(out, image_set, W18, excluded={broken.name})
    assert all(f.stat().st_mtime_ns == mtime for f, mtime in kept.items())  # not redone
    assert len(shard_files(out, W18)) == 12


def test_demo_runs_on_its_own_local_cluster(tmp_path):
    """`--demo` twice on a new cache: the row is built (beside the cluster's start), then
    read from the cache; both runs score the photos (the demo reuses no shards) and say
    when the row was ready."""
    env = python_env()
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "demo"
    argv = [sys.executable, "-m", "hrnet_eval", "--demo", "--output", str(out)]
    argv += ["--local-cpus", "2", "--compile-cache", str(tmp_path / "cache")]
    for how in ("built|cached", "cached"):
        run = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "started a local Ray cluster" in run.stdout
        assert run.stdout.count("These accuracies MEAN NOTHING") == 2  # first and last
        # a new cache: W18 built beside the cluster's start; its worker's build waits for it
        # ("built"), or finds it done if the build won the race with the cluster's start
        ready = re.search(rf"hrnet-w18: ready on worker 0 in [\d.]+ s \(({how})\b", run.stdout)
        assert ready, run.stdout
        early = re.search(r"hrnet-w18: built beside the cluster's start \(imports ", run.stdout)
        assert bool(early) == (how != "cached"), run.stdout
        assert re.search(r"timing: .* first row ready [\d.]+ s later", run.stdout), run.stdout
        document, rows = read_results(out)
        assert document["demo"] is True and rows[W18]["images"] == 8
    assert "MEAN NOTHING" in (out / "results.md").read_text()
    assert (out / "results.png").stat().st_size > 0 and (out / "results.svg").is_file()
    records = [json.loads(f.read_text()) for f in shard_files(out, W18)]
    assert len(records) == 2 and all(r["worker"]["gpu_ids"] == [] for r in records)


def test_row_with_non_finite_logits_stops_and_the_other_finishes(
    ray_head, image_set, tmp_path, compile_cache
):
    """W18's classifier weights set to 1e38 (finite weights, infinite logits): that row
    stops naming the images and reports no accuracy, SSLD finishes with the reference's
    counts, results are written, the job exits non-zero."""
    import h5py

    weights = tmp_path / "weights"
    shutil.copytree(image_set.weights_dir, weights)
    with h5py.File(weights / "hrnet-w18.weights.h5", "r+") as f:
        kernels = []
        # Keras files name layers by class: the one Dense is the head
        f.visititems(
            lambda k, v: (
                kernels.append(k)
                if "/dense/" in k and isinstance(v, h5py.Dataset) and v.ndim == 2
                else None
            )
        )
        (kernel,) = kernels
        f[kernel][...] = 1e38  # features after ReLU sum past 3.4: every logit overflows
    out = tmp_path / "out"
    args = job_args(image_set, out, compile_cache, models=(W18, SSLD), workers=1)
    args[args.index("--weights-dir") + 1] = str(weights)
    run = ray_head.submit(*args, "--gpus-per-worker", "1")
    assert run.returncode != 0, run.stdout
    errors = {line for line in run.stdout.splitlines() if line.startswith("error: ")}
    assert len(errors) == 1, run.stdout
    (error,) = errors
    # the first W18 result back stops the row (two calls may be in flight): it names that
    # shard, and images of it
    found = re.search(r"hrnet-w18: non-finite logits \(NaN or inf\) in shard (\d{8}-\d{8}), "
                      r"images (\S+/ILSVRC2012_val_\d{8}\.JPEG)", error)  # fmt: skip
    assert found and "rerun" not in error, error
    shard, first_image = found.groups()
    ssld_shards = {f.stem: json.loads(f.read_text()) for f in shard_files(out, SSLD)}
    assert first_image in ssld_shards[shard]["names"]  # the same images, scored by SSLD
    _, rows = read_results(out)
    assert rows[W18]["failed"] and rows[W18]["top1"] is None
    assert_counts(out, image_set, (SSLD,))
    assert "## Stopped rows: no accuracy" in (out / "results.md").read_text()
    assert not shard_files(out, W18)


def test_counts_from_a_cold_and_a_warm_program_cache(ray_head, image_set, tmp_path):
    """W18 (the table's pipeline) and timm's W18-small gluon row (bicubic) in one job, on an
    empty program cache (both built), then on that cache (read, nothing built): the
    references' counts and predictions both times (mmpretrain's for W18, timm's model and
    eval transform for the timm row); each image decoded once per pipeline."""
    cache = str(tmp_path / "cache")
    models = (W18, TIMM_ROW)
    for state, how in (("cold", "built"), ("warm", "cached")):
        out, cold = tmp_path / state, state == "cold"
        args = job_args(image_set, out, cache, models=models, workers=1, gpus_per_worker=1)
        run = ray_head.submit(*args)
        assert run.returncode == 0, run.stdout + run.stderr
        for model in models:
            assert re.search(
                rf"{re.escape(model)}: ready on worker 0 in [\d.]+ s \({how}: ", run.stdout
            ), run.stdout
            assert_predictions(out, image_set, model)
        assert_counts(out, image_set, models)
        document, rows = read_results(out)
        # what each row's load spent: a warm row only reads its program and compiles it
        steps = {"read", "to_device", "first_call"}
        steps |= {"model", "fold", "export", "waited"} if cold else set()
        for model in models:
            # "queued": waiting for the other row's compile of their shared program;
            # "device": a row's wait for JAX's start (a thread of the worker's own)
            optional = {"imports", "queued", "device"}
            assert set(document["timing"]["row_load"][model]["steps"]) - optional == steps
        assert document["timing"]["prepare_s"] >= 0
        assert document["timing"]["decoded_images"] == 2 * len(image_set.names)
        assert document["timing"]["decoded_twice"] == 0
        assert [rows[m]["pipeline"] for m in models] == ["224/256 bilinear", "224/256 bicubic"]
    assert (tmp_path / "cache" / "programs").is_dir() and (tmp_path / "cache" / "weights").is_dir()
    # XLA's compiled code, written where the worker's own environment setting sent it
    assert [p.name for p in (tmp_path / "cache").glob("jit_*") if p.is_file()]
