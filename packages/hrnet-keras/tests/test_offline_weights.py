"""Offline weights said once and fully: a failed download says what to fetch, where to put it
and how to convert it; `convert` finds the architecture from the tensors' shapes; a
feature model asked for a head is refused."""

import reference_model
import pytest

from hrnet_keras import convert, create_model
from hrnet_keras.checkpoints import CheckpointError, DownloadError
from hrnet_keras.checkpoints.identify import infer_arch
from hrnet_keras.configs import get_preset


def test_failed_download_names_the_file_the_place_and_the_command(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HRNET_KERAS_CACHE", str(cache))
    monkeypatch.setenv("HRNET_KERAS_MIRROR", (tmp_path / "offline").as_uri())  # nothing there
    preset = get_preset("hrnet-w18")
    with pytest.raises(DownloadError) as info:
        create_model("hrnet-w18", weights="imagenet")
    message = str(info.value)
    assert message.startswith(f"Download of {(tmp_path / 'offline').as_uri()}/{preset.filename}")
    assert f"put {preset.filename} in {cache} ($HRNET_KERAS_CACHE)" in message
    assert (
        f"python -m hrnet_keras.convert {cache / preset.filename} --model hrnet-w18 --out {cache}"
        in message
    )
    assert "\n" not in message


@pytest.mark.parametrize(
    "timm_name, arch", [("hrnet_w18_small_v2", "hrnet-w18-small-v2"), ("hrnet_w18", "hrnet-w18")]
)
def test_convert_without_model_infers_the_architecture(timm_name, arch, tmp_path, capsys):
    path = tmp_path / "model.safetensors"
    reference_model.timm_checkpoint(timm_name, path, seed=2)
    assert infer_arch(path) == arch
    if arch != "hrnet-w18-small-v2":
        return  # converting once is enough
    assert convert.main([str(path), "--out", str(tmp_path), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert f"--model {arch} (from its tensors' shapes)" in captured.err
    assert (tmp_path / f"{get_preset(arch).name}.weights.h5").is_file()


def test_a_checkpoint_of_no_known_layout_is_named(tmp_path, capsys):
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "model.safetensors"
    reference_model.timm_checkpoint("hrnet_w18_small", path, seed=2)
    state = {k: v for k, v in load_file(str(path)).items() if not k.startswith("stage4.0.")}
    odd = tmp_path / "odd.safetensors"
    save_file(state, str(odd))
    with pytest.raises(CheckpointError, match=f"^{odd} fits no known HRNet .*modules per stage"):
        infer_arch(odd)
    assert convert.main([str(odd), "--out", str(tmp_path)]) == 1
    assert "fits no known HRNet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert.main(["https://example.org/x.pth", "--out", str(tmp_path)])
    assert "a URL needs --model NAME" in capsys.readouterr().err


def test_features_only_with_an_explicit_head_is_an_error():
    with pytest.raises(ValueError, match="include_top=True conflicts with it"):
        create_model("hrnet-w18-small", features_only=True, include_top=True)
    kinds = [
        type(create_model("hrnet-w18-small", features_only=True, include_top=top)).__name__
        for top in (None, False)
    ]
    assert kinds == ["FeaturePyramidModel"] * 2
    assert create_model("hrnet-w18-small", input_shape=(64, 64, 3)).output.shape == (None, 1000)


def test_missing_weights_lists_each_row_with_its_command(tmp_path):
    from hrnet_keras.checkpoints.missing import describe_missing, missing_weights
    from hrnet_keras.configs import convert_command

    (tmp_path / get_preset("hrnet-w30").keras_weights).write_bytes(b"converted")
    missing = missing_weights(["hrnet-w18", "hrnet-w30", "hrnet-w64"], tmp_path)
    assert missing == [(r, convert_command(r, tmp_path)) for r in ("hrnet-w18", "hrnet-w64")]
    assert describe_missing(missing, tmp_path).count("python -m hrnet_keras.convert") == 2
