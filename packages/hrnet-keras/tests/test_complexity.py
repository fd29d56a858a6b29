"""Params and FLOPs of the Keras model against mmcv's counter run on the reference models
(mmpretrain's, timm's) and against the published table at its precision."""

import pytest
import reference_model

from hrnet_keras import complexity
from hrnet_keras.configs import get_preset

WIDE = {"hrnet-w44", "hrnet-w48", "hrnet-w64", "hrnet-w48-ssld"}

# The mmclassification HRNet README's Params(M) and Flops(G), as printed there.
PUBLISHED = {
    "hrnet-w18": ("21.30", "4.33"),
    "hrnet-w30": ("37.71", "8.17"),
    "hrnet-w32": ("41.23", "8.99"),
    "hrnet-w40": ("57.55", "12.77"),
    "hrnet-w44": ("67.06", "14.96"),
    "hrnet-w48": ("77.47", "17.36"),
    "hrnet-w64": ("128.06", "29.00"),
    "hrnet-w18-ssld": ("21.30", "4.33"),
    "hrnet-w48-ssld": ("77.47", "17.36"),
}


def _rows(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in WIDE else n for n in names]


@pytest.mark.parametrize("name", _rows(PUBLISHED))
def test_params_and_flops_round_to_the_published_table(name):
    params, flops = complexity.measure(name)
    assert (f"{params / 1e6:.2f}", f"{flops / 1e9:.2f}") == PUBLISHED[name]
    # presets.json holds the exact figures (the evaluator's results and scheduling read them)
    preset = get_preset(name)
    assert (params, flops) == (preset.params, preset.flops)


@pytest.mark.parametrize("arch", _rows([n for n in PUBLISHED if not n.endswith("-ssld")]))
def test_params_and_flops_equal_mmcvs_counter_on_the_reference_model(arch):
    """mmcv's counter, the table's, on mmpretrain's model: backbone + neck, as the table
    counted them (mmcls' get_flops.py: `forward = extract_feat`); params of the whole model."""
    reference = reference_model.build_reference(arch, device="meta")
    reference.forward = reference.extract_feat
    assert complexity.measure(arch) == reference_model.mmcv_complexity(reference)


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
    converter folds into BatchNorm, so the Keras model has that many fewer; mmcv's counter on
    that model gives the Keras model's FLOPs."""
    import timm

    from hrnet_keras.configs import ARCHS, HEAD_CONV_BIASES

    preset = get_preset(row)
    timm_name = ARCHS[preset.arch].timm_name
    count = sum(p.numel() for p in timm.create_model(timm_name).parameters())
    assert count == preset.timm_params
    assert HEAD_CONV_BIASES == 3840 and preset.params == count - HEAD_CONV_BIASES
    without = timm.create_model(timm_name, head_conv_bias=False)
    assert sum(p.numel() for p in without.parameters()) == preset.params
    # mmcv's counter on timm's model (no head-conv biases), backbone + neck + pooling
    without.to("meta")
    without.forward = lambda x: without.global_pool(without.forward_features(x))
    assert complexity.measure(row) == reference_model.mmcv_complexity(without)
    assert complexity.measure(row) == (preset.params, preset.flops)
    # our FLOPs (mmcv rules: BatchNorm, ReLU, ... counted too) within 1% of timm's GMACs
    assert abs(preset.flops / 1e9 - preset.timm_gmacs) / preset.timm_gmacs < 0.01
