"""`--no-download` names every row whose weights are missing, each with its command."""

import pytest

from hrnet_eval.config import EvalConfig
from hrnet_eval.job import resolve_all
from hrnet_eval.weights import WeightsError
from hrnet_keras.configs import convert_command, get_preset


def test_no_download_lists_every_missing_row_with_its_command(tmp_path):
    models = ("hrnet-w18", "hrnet-w32", "hrnet-w48", "hrnet_w18_small.gluon_in1k")
    (tmp_path / get_preset("hrnet-w32").filename).write_bytes(b"a checkpoint, converted later")
    config = EvalConfig(models=models, weights_dir=str(tmp_path), no_download=True)
    with pytest.raises(WeightsError) as caught:
        resolve_all(list(models), config)
    message = str(caught.value)
    assert message.startswith(f"No weights in {tmp_path.resolve()} for 2 row(s), get them with: ")
    for row in ("hrnet-w18", "hrnet-w48"):
        assert f"{row}: {convert_command(row, tmp_path.resolve())}" in message
    assert "hrnet-w32" not in message and "gluon" not in message  # there / from the Hub
    assert "\n" not in message
