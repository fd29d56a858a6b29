"""Flags checked before any work: a --compile-cache that is a file, an absurd --batch-size,
folders another user can write (refused as ssh refuses such a key), output into a pipe
that closes early. One line, the README's exit codes, nothing created."""

import os
import subprocess
import sys

import pytest

from hrnet_eval.permissions import PermissionsError, check_private, make_private
from hrnet_eval.weights import resolve
from ray_head import python_env
from test_cli_errors import run_main


def evaluate(capsys, tmp_path, *extra):
    """`run_main` of an evaluation whose data and weights are never reached."""
    argv = ["--models", "hrnet-w18", "--data", tmp_path / "val", "--no-download"]
    return run_main(capsys, *argv, "--weights-dir", tmp_path / "weights", *extra)


@pytest.mark.parametrize("where", ["a file", "below a file"])
def test_compile_cache_at_a_file(capsys, tmp_path, where):
    blocker = tmp_path / "cache-file"
    blocker.write_text("not a folder")
    cache = blocker if where == "a file" else blocker / "jax"
    output = tmp_path / "new" / "out"
    code, out, err = evaluate(capsys, tmp_path, "--compile-cache", cache, "--output", output)
    assert code == 1 and len(err) == 1, err
    expected = "is a file" if where == "a file" else f"is below {blocker}, a file"
    assert err[0] == f"error: --compile-cache {cache} {expected}, not a folder: give a folder."
    assert not (tmp_path / "new").exists() and "cluster" not in out


def test_an_absurd_batch_size_is_a_usage_error(capsys, tmp_path):
    code, out, err = evaluate(capsys, tmp_path, "--batch-size", "1000000000")
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("python -m hrnet_eval: error: --batch-size 1000000000: its 224 x 224")
    assert "give at most 1,826,091" in err[0]
    assert evaluate(capsys, tmp_path, "--batch-size", "1826091", "--output", "/proc/x")[0] == 1


def test_a_batch_that_does_not_fit_names_the_largest_that_does():
    from hrnet_keras.configs import get_preset

    from hrnet_eval.memory import batch_bytes, batch_problem

    w18, w64 = get_preset("hrnet-w18"), get_preset("hrnet-w64")
    assert batch_bytes(w64, 8)[1] > batch_bytes(w18, 8)[1]  # wider rows: more per image
    free = batch_bytes(w18, 100)[0] + 1  # 100 images fit, 101 do not
    assert batch_problem("hrnet-w18", w18, 100, free, "gpu:0") is None
    why = batch_problem("hrnet-w18", w18, 101, free, "gpu:0")
    assert why.startswith("--batch-size 101 does not fit hrnet-w18 in gpu:0: about ")
    assert why.endswith("; give --batch-size 100 or less")
    assert batch_problem("hrnet-w18", w18, 1, 1000, "host").endswith("not one image fits")


def test_a_batch_too_large_for_the_worker_is_refused_before_any_export(tmp_path):
    """On the worker, before a program is exported or compiled: its error names the largest
    batch that fits this machine's memory, and the compile cache holds no program."""
    from hrnet_eval.config import WorkerConfig
    from hrnet_eval.demo import random_spec
    from hrnet_eval.programs import ProgramError
    from hrnet_eval.worker import EvalWorker

    cache = tmp_path / "cache"
    worker = EvalWorker(WorkerConfig(batch_size=1_000_000, compile_cache=str(cache)))
    with pytest.raises(ProgramError, match=r"^--batch-size 1000000 does not fit hrnet-w18 in "):
        worker.load(random_spec("hrnet-w18"))
    assert not list(cache.rglob("*.stablehlo"))


def private(path):
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("flag", ["--output", "--compile-cache"])
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_a_folder_others_can_write_is_refused_with_the_fix(capsys, tmp_path, flag, mode):
    folder = private(tmp_path / "shared")
    (folder / "kept").write_text("a file of an earlier run")
    folder.chmod(mode)
    other = "--compile-cache" if flag == "--output" else "--output"
    code, out, err = evaluate(capsys, tmp_path, flag, folder, other, private(tmp_path / "mine"))
    assert code == 1 and len(err) == 1, err
    who = "its group" if mode == 0o770 else "every user"
    assert err[0] == (
        f"error: {flag} {folder}: {folder} can be written by {who} (mode {mode:o}), and what is "
        f"stored there is read back as trusted; fix it with `chmod -R go-w {folder}` (or give "
        "a folder only you can write)."
    )
    assert sorted(os.listdir(folder)) == ["kept"] and "cluster" not in out
    folder.chmod(0o755)  # the fix: then the run goes on to its next check (no data here)
    code, _, err = evaluate(capsys, tmp_path, flag, folder, other, tmp_path / "mine")
    assert code == 1 and "Data path" in err[0], err


def test_a_folder_above_that_others_can_write_is_refused_unless_sticky(tmp_path):
    above = private(tmp_path / "above")
    folder = private(above / "cache")
    above.chmod(0o777)  # anyone may rename `cache` away and put theirs in its place
    with pytest.raises(PermissionsError, match=f"`chmod go-w {above}`"):
        check_private(folder, "--compile-cache")
    with pytest.raises(PermissionsError, match=f"{above} can be written by every user"):
        check_private(above / "missing" / "cache", "--compile-cache")  # judged by its parents
    above.chmod(0o1777)  # as /tmp: only the owner of `cache` may rename it
    check_private(folder, "--compile-cache")
    check_private(above / "missing", "--compile-cache")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_folder_of_another_user_is_refused_with_chown(tmp_path):
    folder = private(tmp_path / "theirs")
    os.chown(folder, 65534, -1)
    with pytest.raises(PermissionsError) as caught:
        check_private(folder, "--output")
    assert str(caught.value).startswith(
        f"--output {folder}: {folder} belongs to user 65534, who can write it"
    )
    assert f"fix it with `chown -R {os.geteuid()} {folder}`" in str(caught.value)


def test_new_folders_are_created_0700(capsys, tmp_path):
    made = make_private(tmp_path / "a" / "b")
    assert made == [tmp_path / "a", tmp_path / "a" / "b"]
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in made)
    output = tmp_path / "out" / "results"
    code, _, err = evaluate(capsys, tmp_path, "--output", output)
    assert code == 1 and "Data path" in err[0], err
    assert not (tmp_path / "out").exists()  # a refused run leaves none behind


def test_a_weights_folder_converted_into_that_others_can_write(tmp_path):
    weights = private(tmp_path / "weights")
    weights.chmod(0o777)
    with pytest.raises(PermissionsError, match=f"--weights-dir {weights}: .*`chmod -R go-w"):
        resolve("hrnet-w18", weights, allow_download=True)  # before any download
    new = tmp_path / "new-weights"
    with pytest.raises(Exception):
        resolve("hrnet-w18", new, allow_download=True)  # no network here: the download fails
    assert new.stat().st_mode & 0o777 == 0o700


def test_list_into_a_pipe_closed_early_ends_quietly():
    """`python -m hrnet_eval --list | head -1`, the reader gone before the first write."""
    read, write = os.pipe()
    os.close(read)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "hrnet_eval", "--list"],
            stdout=write,
            stderr=subprocess.PIPE,
            env=python_env(),
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert run.returncode == 0 and run.stderr == "", run.stderr
