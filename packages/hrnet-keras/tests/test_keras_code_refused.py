"""A `.keras` file carrying code (a Lambda layer) is refused saying so, in full."""

import keras
import pytest

from hrnet_keras import create_model
from hrnet_keras.export import main
from hrnet_keras.loading import WeightsFileError


@pytest.fixture()
def lambda_file(tmp_path):
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda x: x * 2)(inputs)
    path = tmp_path / "hrnet-w18.keras"
    keras.Model(inputs, outputs).save(path)
    return path


def test_lambda_keras_file_is_refused_saying_why(lambda_file):
    path = lambda_file
    with pytest.raises(WeightsFileError) as caught:
        create_model("hrnet-w18", weights=str(path))
    message = str(caught.value)
    assert message.startswith(
        f"{path} carries code (a Python function inside the file, e.g. a Lambda layer's), "
        "which Keras' safe mode refused to load; hrnet_keras loads .keras files in safe mode "
        "only and runs nothing from them."
    )
    assert "truncated" not in message and "\n" not in message
    assert message.endswith("`keras.config.enable_unsafe_deserialization().")  # not cut short


def test_export_gives_the_whole_line(capsys, lambda_file, tmp_path):
    path = lambda_file
    code = main(["hrnet-w18", "--format", "keras", "--weights", str(path), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "carries code" in err[0]
    assert err[0].endswith("enable_unsafe_deserialization().")
