"""--output checked with the result files, before the cluster; a refused run leaves no
folder it created, and an existing one as it was."""

import pytest

from hrnet_eval.__main__ import main
from weights_files import write_weights


@pytest.fixture()
def setup(tmp_path, photo_dir):
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n" * 24)
    argv = ["--models", "hrnet-w18", "--data", photo_dir, "--labels", labels, "--no-download"]
    return weights_dir, argv + ["--weights-dir", weights_dir]


def run(capsys, argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


@pytest.mark.parametrize("name", ["results.json", "results.md", "results.svg"])
def test_a_result_file_that_is_a_folder(capsys, tmp_path, setup, name):
    weights_dir, argv = setup
    write_weights(weights_dir / "hrnet-w18.weights.h5", "hrnet-w18")
    output = tmp_path / "out"
    (output / name / "inside").mkdir(parents=True)
    code, out, err = run(capsys, argv + ["--output", output])
    assert code == 1 and err == [
        f"error: --output {output} holds {name} as something other than a file (a folder?): "
        "the results could not be written there; move it away or give another --output."
    ]
    assert "cluster" not in out
    assert sorted(p.name for p in output.iterdir()) == [name]  # left as it was


def test_refused_run_removes_only_the_folders_it_created(capsys, tmp_path, setup):
    _, argv = setup  # no weights: refused after the output check
    output = tmp_path / "a" / "b" / "out"
    code, _, err = run(capsys, argv + ["--output", output])
    assert code == 1 and len(err) == 1 and "for 1 row(s), get them with: hrnet-w18: " in err[0]
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    code, _, err = run(capsys, argv + ["--output", existing / "new"])
    assert code == 1 and sorted(p.name for p in existing.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, argv + ["--output", empty])
    assert code == 1 and empty.is_dir() and not any(empty.iterdir())
