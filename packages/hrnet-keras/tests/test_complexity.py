import pytest

from hrnet_keras import complexity
from hrnet_keras.configs import get_preset

WIDE = {"hrnet-w44", "hrnet-w48", "hrnet-w64", "hrnet-w48-ssld"}
ROWS = [
    pytest.param(name, marks=pytest.mark.slow) if name in WIDE else name
    for name in [
        "hrnet-w18",
        "hrnet-w30",
        "hrnet-w32",
        "hrnet-w40",
        "hrnet-w44",
        "hrnet-w48",
        "hrnet-w64",
        "hrnet-w48-ssld",
    ]
]


@pytest.mark.parametrize("name", ROWS)
def test_params_and_flops_equal_the_table(name):
    params, flops = complexity.measure(name)
    preset = get_preset(name)
    assert (params, flops) == (preset.params, preset.flops)


def test_cli_prints_rows_and_exits_zero(capsys):
    assert complexity.main(["hrnet-w18", "hrnet-w18-ssld"]) == 0
    out = capsys.readouterr().out
    assert "hrnet-w18-ssld" in out and "21,295,164" in out and "4,330,397,932" in out
    assert out.count("yes") == 2


def test_cli_exits_nonzero_when_a_row_differs(monkeypatch, capsys):
    monkeypatch.setattr(complexity, "measure", lambda name: (1, 2))
    assert complexity.main(["hrnet-w18"]) == 1
    assert "NO" in capsys.readouterr().out


def test_flops_rules_on_a_small_model():
    import keras

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=True)(inputs)  # 9*3*4*64 + 4*64
    x = keras.layers.BatchNormalization()(x)  # 2 * 256
    x = keras.layers.ReLU()(x)  # 256
    x = keras.layers.UpSampling2D(2)(x)  # 1024
    x = keras.layers.GlobalAveragePooling2D()(x)  # 1024
    model = keras.Model(inputs, x)
    assert complexity.model_flops(model) == 9 * 3 * 4 * 64 + 256 + 512 + 256 + 1024 + 1024


@pytest.mark.parametrize(
    "row", ["hrnet_w18_small.gluon_in1k", "hrnet_w18_small_v2.gluon_in1k", "hrnet_w18.ms_aug_in1k"]
)
def test_timm_rows_params_are_timms_less_its_head_conv_biases(row):
    """timm's model, built here, has `timm_params`; its head convs carry 3,840 biases that the
    converter folds into BatchNorm, so the Keras model has that many fewer."""
    import timm

    from hrnet_keras.configs import ARCHS, HEAD_CONV_BIASES

    preset = get_preset(row)
    timm_name = ARCHS[preset.arch].timm_name
    count = sum(p.numel() for p in timm.create_model(timm_name).parameters())
    assert count == preset.timm_params
    assert HEAD_CONV_BIASES == 3840 and preset.params == count - HEAD_CONV_BIASES
    without = timm.create_model(timm_name, head_conv_bias=False)
    assert sum(p.numel() for p in without.parameters()) == preset.params
    assert complexity.measure(row) == (preset.params, preset.flops)
    # our FLOPs (mmcv rules: BatchNorm, ReLU, ... counted too) within 1% of timm's GMACs
    assert abs(preset.flops / 1e9 - preset.timm_gmacs) / preset.timm_gmacs < 0.01
