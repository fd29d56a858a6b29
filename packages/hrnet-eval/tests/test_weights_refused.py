"""Weights refused before the cluster: another row's shapes, NaN or inf in a tensor."""

import numpy as np
import pytest

from hrnet_eval.weights import WeightsError, resolve
from weights_files import write_weights


def test_another_rows_weights_under_this_rows_name(tmp_path):
    path = write_weights(tmp_path / "hrnet-w18.weights.h5", "hrnet-w32")
    with pytest.raises(WeightsError) as caught:
        resolve("hrnet-w18", tmp_path, allow_download=False)
    message = str(caught.value)
    assert message.startswith(
        f"{path} does not hold the weights of hrnet-w18: tensor layers/conv2d_15/vars/0 "
        "(backbone.transition1.0.0) has shape (3, 3, 256, 32), hrnet-w18 needs (3, 3, 256, 18)."
    )
    assert "\n" not in message


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_name_the_first_tensor(tmp_path, value):
    key = "layers/conv2d_15/vars/0"
    path = write_weights(tmp_path / "hrnet-w18.weights.h5", "hrnet-w18", key, value)
    with pytest.raises(WeightsError) as caught:
        resolve("hrnet-w18", tmp_path, allow_download=False)
    assert str(caught.value).startswith(
        f"{path} holds NaN or inf in tensor {key} (backbone.transition1.0.0): hrnet-w18 would "
        "score meaningless numbers. Convert it again: python -m hrnet_keras.convert"
    )


def test_good_weights_pass(tmp_path):
    write_weights(tmp_path / "hrnet-w18.weights.h5", "hrnet-w18")
    assert resolve("hrnet-w18", tmp_path, allow_download=False).published is False


def test_refused_before_the_cluster_in_one_line(capsys, tmp_path, photo_dir):
    from hrnet_eval.__main__ import main

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    write_weights(weights_dir / "hrnet-w18.weights.h5", "hrnet-w18", "layers/dense/vars/1")
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n" * 24)
    output = tmp_path / "new" / "out"
    argv = ["--models", "hrnet-w18", "--data", photo_dir, "--labels", labels, "--no-download"]
    argv += ["--weights-dir", weights_dir, "--output", output]
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert "holds NaN or inf in tensor layers/dense/vars/1 (head.fc)" in err[0]
    assert "cluster" not in captured.out
    assert not (tmp_path / "new").exists()  # the folders it created are gone
