"""Weights refused before the cluster: another row's shapes, NaN or inf in a tensor."""

import numpy as np
import pytest

from hrnet_eval.weights import WeightsError, resolve
from weights_files import write_weights


def refusal(weights_dir, **options):
    """The message of the `WeightsError` that refuses hrnet-w18's file in `weights_dir`."""
    with pytest.raises(WeightsError) as caught:
        resolve("hrnet-w18", weights_dir, allow_download=False, **options)
    return str(caught.value)


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
    assert refusal(tmp_path).startswith(
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


# The BatchNorm after stage 2's first 3 x 3 conv of 36 channels (branch 1): 11,700 NaN when
# its variance is -1, the count the issue saw.
BATCHNORM = "layers/batch_normalization_19"
LAYER = "backbone.stage2.0.branches.1.0.bn1"


@pytest.mark.parametrize("variance", [-1.0, -2e-5])
def test_a_batchnorm_variance_that_cannot_fold_is_refused(tmp_path, variance):
    key = f"{BATCHNORM}/vars/3"
    path = write_weights(tmp_path / "hrnet-w18.weights.h5", "hrnet-w18", key, variance)
    message = refusal(tmp_path)
    assert message.startswith(
        f"{path}: BatchNorm {LAYER} ({key}) has moving_variance + epsilon <= 0 in 1 channel(s), "
        "first channel 35"
    ), message
    assert "hrnet-w18 cannot give finite logits. Convert it again: python -m hrnet_keras" in message
    assert "\n" not in message


def test_a_fold_that_overflows_float32_is_refused(tmp_path):
    """Finite tensors, variance + epsilon > 0, yet the kernel times gamma / sqrt(variance +
    epsilon) is past float32's range in the last channel."""
    import h5py

    path = write_weights(
        tmp_path / "hrnet-w18.weights.h5", "hrnet-w18", f"{BATCHNORM}/vars/0", 3e38
    )
    with h5py.File(path, "r+") as f:
        f[f"{BATCHNORM}/vars/3"][-1] = 0.0  # scale 3e38 / sqrt(1e-5)
    assert refusal(tmp_path).startswith(
        f"{path}: folding BatchNorm {LAYER} ({BATCHNORM}) into its conv gives NaN or inf in 1 "
        "output channel(s), first channel 35 (float32 overflow): hrnet-w18 cannot give finite"
    )


def test_the_file_of_the_issue_folds_to_the_nan_count_it_reported(tmp_path):
    """moving_variance -1 in every channel: 36 x (3 x 3 x 36 + 1) = 11,700 NaN when folded."""
    import h5py

    from hrnet_keras.fold_check import conv_batchnorm_pairs, folded

    path = write_weights(tmp_path / "hrnet-w18.weights.h5", "hrnet-w18")
    ((conv, bn, layer),) = [p for p in conv_batchnorm_pairs("hrnet-w18") if p[1] == BATCHNORM]
    assert layer == LAYER
    with h5py.File(path, "r+") as f:
        f[f"{bn}/vars/3"][...] = -1.0
        stats = [f[f"{bn}/vars/{i}"][()] for i in range(4)]
        kernel, bias = folded(f[f"{conv}/vars/0"][()], *stats)
    assert int(np.isnan(kernel).sum() + np.isnan(bias).sum()) == 11_700
    assert "in 36 channel(s)" in refusal(tmp_path)


def test_verdicts_of_the_earlier_checks_do_not_vouch_for_a_file(tmp_path):
    """A `checked/` entry written under the earlier key (no `checks`) is not this check's:
    the file is read and its fold refused."""
    from hrnet_keras.checkpoints import file_sha256

    from hrnet_eval import programs, weights

    key = f"{BATCHNORM}/vars/3"
    path = write_weights(tmp_path / "hrnet-w18.weights.h5", "hrnet-w18", key, -1.0)
    cache = tmp_path / "cache"
    old_key = weights.checked_key("hrnet-w18", file_sha256(path))
    del old_key["checks"]
    programs.ProgramCache(cache).write(old_key, weights.CHECKED_FILE, lambda p: p.write_text("1"))
    assert "moving_variance" in refusal(tmp_path, compile_cache=cache)


@pytest.mark.parametrize("backend", ["jax", "tensorflow", "torch"])
def test_the_file_of_the_issue_is_refused_before_the_start_on_every_backend(
    capsys, tmp_path, photo_dir, backend
):
    """The per-batch finite check passed it on XLA:CPU (a fused ReLU + average pool turns
    the NaN features into 0): it is refused in the driver, whatever the workers' backend."""
    import h5py

    from hrnet_eval.__main__ import main

    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    path = write_weights(weights_dir / "hrnet-w18.weights.h5", "hrnet-w18")
    with h5py.File(path, "r+") as f:
        f[f"{BATCHNORM}/vars/3"][...] = -1.0
    labels = tmp_path / "labels.txt"
    labels.write_text("n01440764\n" * 24)
    argv = ["--models", "hrnet-w18", "--data", photo_dir, "--labels", labels, "--no-download"]
    argv += ["--weights-dir", weights_dir, "--output", tmp_path / "out", "--backend", backend]
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {path}: BatchNorm {LAYER} ({BATCHNORM}/vars/3) has")
    assert "in 36 channel(s)" in err[0] and "cluster" not in captured.out
