import pytest

import hrnet_keras
from hrnet_keras.configs import ARCHS, get_arch, get_preset

ROWS = [
    "hrnet-w18",
    "hrnet-w30",
    "hrnet-w32",
    "hrnet-w40",
    "hrnet-w44",
    "hrnet-w48",
    "hrnet-w64",
    "hrnet-w18-ssld",
    "hrnet-w48-ssld",
]


def test_list_models_is_the_table():
    assert hrnet_keras.list_models() == ROWS


def test_ssld_rows_share_the_architecture():
    assert get_arch("hrnet-w18-ssld") is ARCHS["hrnet-w18"]
    assert get_arch("hrnet-w48-ssld") is ARCHS["hrnet-w48"]
    assert ARCHS["hrnet-w32"].branch_channels == (32, 64, 128, 256)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="hrnet-w19.*hrnet-w18, hrnet-w30"):
        hrnet_keras.create_model("hrnet-w19")


@pytest.mark.parametrize("name", ROWS)
def test_preset_file_name_carries_its_sha256_prefix(name):
    preset = get_preset(name)
    assert preset.url.endswith("/" + preset.filename)
    assert preset.filename.endswith(f"-{preset.sha256_prefix}.pth")
    assert len(preset.sha256_prefix) == 8
    assert preset.keras_weights == f"{name}.weights.h5"
