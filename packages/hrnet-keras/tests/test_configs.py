import numpy as np
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


TIMM_ROWS = [
    "hrnet_w18_small.gluon_in1k",
    "hrnet_w18_small.ms_in1k",
    "hrnet_w18_small_v2.gluon_in1k",
    "hrnet_w18_small_v2.ms_in1k",
    "hrnet_w18.ms_aug_in1k",
]


def test_list_models_is_the_table_then_timms_rows():
    assert hrnet_keras.list_models("mmcls") == ROWS
    assert hrnet_keras.list_models("timm") == TIMM_ROWS
    assert hrnet_keras.list_models() == ROWS + TIMM_ROWS
    with pytest.raises(ValueError, match="Unknown family 'tf'; known: mmcls, timm"):
        hrnet_keras.list_models("tf")


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


def test_manifest_is_generated_from_the_presets():
    from pathlib import Path

    from hrnet_keras import configs

    manifest = Path(__file__).resolve().parents[3] / "weights" / "manifest.json"
    assert (
        manifest.read_text() == configs.manifest_text()
    ), f"{manifest} is out of date; regenerate it: {configs.GENERATE}"


def test_test_pipeline_is_the_tables():
    from hrnet_keras import complexity, preprocessing
    from hrnet_keras.configs import TEST_PIPELINE

    assert (TEST_PIPELINE.resize_short_edge, TEST_PIPELINE.crop) == (256, 224)
    assert TEST_PIPELINE.crop_pct == 0.875 and TEST_PIPELINE.interpolation == "bilinear"
    assert TEST_PIPELINE.mean == (123.675, 116.28, 103.53)
    assert TEST_PIPELINE.std == (58.395, 57.12, 57.375)
    # every reader takes the values from there
    assert preprocessing.RESIZE_SHORT_EDGE == 256 and preprocessing.CROP_SIZE == 224
    assert complexity.IMAGE_SIZE == 224
    assert preprocessing.MEAN.tolist() == list(np.float32(TEST_PIPELINE.mean))
