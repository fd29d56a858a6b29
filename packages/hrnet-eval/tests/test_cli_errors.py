"""Bad input: one clear line on stderr and a non-zero exit, before any cluster starts."""

import shutil
import subprocess
import sys

import pytest

from hrnet_eval.__main__ import main
from ray_head import python_env


def run_main(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def evaluate(capsys, data, weights_dir, output, *extra, models="hrnet-w18"):
    """`run_main` of an evaluation of `data` with weights from `weights_dir`."""
    return run_main(
        capsys, "--models", models, "--data", data, "--weights-dir", weights_dir,
        "--output", output, *extra,
    )  # fmt: skip


@pytest.fixture()
def weights_dir(tmp_path):
    (tmp_path / "weights").mkdir()
    return tmp_path / "weights"


def test_missing_data_folder(capsys, tmp_path, weights_dir):
    code, _, err = evaluate(capsys, tmp_path / "imagenet/val", weights_dir, tmp_path / "out")
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"error: Data path {tmp_path / 'imagenet/val'} does not exist")


def test_missing_weights_give_the_command_that_gets_them(capsys, tmp_path, weights_dir, photo_dir):
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n" * 24)
    code, _, err = evaluate(
        capsys,
        photo_dir,
        weights_dir,
        tmp_path / "out",
        "--labels",
        labels,
        "--no-download",
        models="hrnet-w18,hrnet-w30",
    )
    assert code == 1 and len(err) == 1  # every missing row, each with its command
    assert err[0].startswith(f"error: No weights in {weights_dir} for 2 row(s), get them with: ")
    for row in ("hrnet-w18", "hrnet-w30"):
        assert (
            f"{row}: python -m hrnet_keras.convert --download {row} --out {weights_dir}" in err[0]
        )


def test_labels_that_do_not_match_the_files(capsys, tmp_path, weights_dir, photo_dir):
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n" * 20)  # 24 images
    code, _, err = evaluate(capsys, photo_dir, weights_dir, tmp_path / "out", "--labels", labels)
    assert code == 1 and len(err) == 1
    assert err[0].startswith(
        f"error: Labels do not match the files: {labels} has no label for "
        "ILSVRC2012_val_00000021.JPEG"
    )


def test_class_folder_that_is_not_a_class(capsys, tmp_path, weights_dir, photo_dir):
    (tmp_path / "val" / "cats").mkdir(parents=True)
    shutil.copy(photo_dir / "ILSVRC2012_val_00000001.JPEG", tmp_path / "val" / "cats")
    (tmp_path / "val" / "n01440764").mkdir()
    code, _, err = evaluate(capsys, tmp_path / "val", weights_dir, tmp_path / "out")
    assert code == 1 and len(err) == 1
    assert "cats is not an ImageNet-1k class" in err[0]


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--models", "hrnet-w18,hrnet-w99"],
            "unknown model 'hrnet-w99'; known: hrnet-w18, hrnet-w30",
        ),
        (["--data", "/x"], "give --models NAME[,NAME...], --all, --family NAME, --demo or --list"),
        (["--all", "--family", "timm", "--data", "/x"], "--all is --family mmcls"),
        (["--family", "keras", "--data", "/x"], "argument --family: invalid choice: 'keras'"),
        (["--models", "hrnet-w18"], "give --data PATH"),
        (["--all", "--models", "hrnet-w18", "--data", "/x"], "either --models or --all"),
        (["--demo", "--data", "/x"], "--demo uses scikit-image's photos"),
        (["--models", "hrnet-w18", "--data", "/x", "--shard-size", "0"], "argument --shard-size"),
        (["--models", "hrnet-w18", "--data", "/x", "--cpus-per-worker", "0"], "above 0, got '0'"),
        (["--models", "hrnet-w18", "--data", "/x", "--cpus-per-worker", "nan"], "got 'nan'"),
        (["--models", "hrnet-w18", "--data", "/x", "--gpus-per-worker", "inf"], "got 'inf'"),
        (["--models", "hrnet-w18", "--data", "/x", "--progress-seconds", "-1"], "at least 0"),
        (["--models", "hrnet-w18", "--data", "/x", "--rows-per-worker", "0"], "at least 1"),
    ],
)
def test_usage_errors_are_one_line(capsys, argv, message):
    code, _, err = run_main(capsys, *argv)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("python -m hrnet_eval: error: ") and message in err[0]


def test_list_and_help(capsys):
    code, out, _ = run_main(capsys, "--list")
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 15  # the table's 9 rows, then timm's 5
    assert lines[1].split() == [
        "hrnet-w18",
        "mmcls",
        "224/256",
        "bilinear",
        "21.30",
        "4.33",
        "76.75",
        "93.44",
        "hrnet-w18.weights.h5",
    ]
    assert lines[9].split()[:7] == [
        *("hrnet-w48-ssld", "mmcls", "224/256", "bilinear"),
        *("77.47", "17.36", "83.63"),
    ]
    assert lines[10].split()[:4] == ["hrnet_w18_small.gluon_in1k", "timm", "224/256", "bicubic"]
    assert lines[-1].split()[:4] == ["hrnet_w18.ms_aug_in1k", "timm", "224/235", "bilinear"]
    code, out, _ = run_main(capsys, "--help")
    assert code == 0
    for option in (
        "--all",
        "--family",
        "--models",
        "--data",
        "--labels",
        "--weights-dir",
        "--output",
        "--backend",
        "--batch-size",
        "--gpus-per-worker",
        "--workers",
        "--shard-size",
        "--limit",
        "--list",
        "--skip-corrupt",
        "--demo",
        "ray job submit",
    ):
        assert option in out


def test_rows_by_family_list_and_alias():
    from hrnet_eval.__main__ import parse_args
    from hrnet_keras.configs import list_models

    def models(*argv):
        return parse_args([*argv, "--data", "/x"]).models

    assert models("--all") == tuple(list_models("mmcls"))
    assert models("--family", "timm") == tuple(list_models("timm"))
    assert models("--family", "mmcls", "--family", "timm") == tuple(list_models())
    # a list and a family together, each row once, the list first; timm's name of a table
    # checkpoint is that row
    assert models("--models", "hrnet_w18.ms_in1k,hrnet-w64", "--family", "mmcls")[:3] == (
        "hrnet-w18",
        "hrnet-w64",
        "hrnet-w30",
    )
    demo = parse_args(["--demo", "--models", "hrnet-w18,hrnet_w18_small.gluon_in1k"])
    assert demo.models == ("hrnet-w18", "hrnet_w18_small.gluon_in1k")


def test_unknown_model_exit_code_from_the_command_line():
    run = subprocess.run(
        [sys.executable, "-m", "hrnet_eval", "--models", "resnet50", "--data", "/x"],
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == (
        "python -m hrnet_eval: error: argument --models: unknown model 'resnet50'; known: "
        "hrnet-w18, hrnet-w30, hrnet-w32, hrnet-w40, hrnet-w44, hrnet-w48, hrnet-w64, "
        "hrnet-w18-ssld, hrnet-w48-ssld, hrnet_w18_small.gluon_in1k, hrnet_w18_small.ms_in1k, "
        "hrnet_w18_small_v2.gluon_in1k, hrnet_w18_small_v2.ms_in1k, hrnet_w18.ms_aug_in1k "
        "(see --help)"
    )


@pytest.mark.parametrize("where", ["a file", "inside a file", "unwritable"])
def test_output_that_cannot_be_written(capsys, tmp_path, weights_dir, photo_dir, where):
    blocker = tmp_path / "results.txt"
    blocker.write_text("not a folder")
    output = {
        "a file": blocker,
        "inside a file": blocker / "out",
        "unwritable": "/proc/hrnet-eval-out",  # no one may create files there, not even root
    }[where]
    code, _, err = evaluate(capsys, photo_dir, weights_dir, output)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: --output {output} ")
    assert "give a" in err[0] and "folder" in err[0]


def test_truncated_weights_are_named_before_the_cluster_starts(capsys, tmp_path, photo_dir):
    import h5py
    import numpy as np

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    path = weights_dir / "hrnet-w18.weights.h5"
    with h5py.File(path, "w") as f:
        f["layers/conv/vars/0"] = np.ones((256, 256, 3, 3), "float32")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n" * 24)
    code, out, err = evaluate(
        capsys, photo_dir, weights_dir, tmp_path / "out", "--labels", labels, "--no-download"
    )
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {path} is not a readable Keras weights file (truncated")
    assert "Convert it again: python -m hrnet_keras.convert --download hrnet-w18" in err[0]
    assert "cluster" not in out
