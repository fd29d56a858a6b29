"""`python -m hrnet_keras.export --out` at or below a file: one line, before any model is built."""

import pytest

from hrnet_keras.export import main


@pytest.mark.parametrize("where", ["at", "below"])
def test_out_at_or_below_a_file(capsys, tmp_path, where):
    blocker = tmp_path / "exported"
    blocker.write_text("a file")
    out = blocker if where == "at" else blocker / "sub" / "dir"
    code = main(["hrnet-w18", "--format", "keras", "--weights", "none", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    what = "is a file" if where == "at" else f"is below the file {blocker}"
    assert code == 2 and err == [
        f"python -m hrnet_keras.export: error: --out {out} {what}: give a folder to write the "
        "export into"
    ]
    assert blocker.read_text() == "a file"
