"""Params and FLOPs measured on the Keras model, beside the published figures.

FLOPs follow the mmcv 1.x counter the table used (one multiply-add = one FLOP),
counted on backbone + neck at the test crop (224x224) by walking the Keras layers and their
shapes: conv kh*kw*Cin/groups*Cout*Hout*Wout (+Cout*Hout*Wout with bias),
BatchNorm 2*numel(in), ReLU numel(out), pooling numel(in), nearest upsample
numel(out), Dense in*out (+out with bias). Params are the trainable weights,
as torch counts them (BatchNorm moving statistics excluded). For timm's rows the
"published" Params are timm's count less its 3,840 head-conv biases (folded into the
BatchNorm after each), and the FLOPs this counter's own, recorded; timm's GMACs are
printed beside them (timm counts multiply-adds of convs and the Linear only).

    python -m hrnet_keras.complexity --all
"""

import argparse
import functools
import math
import sys

from keras import layers

from hrnet_keras.architecture import layer_name
from hrnet_keras.configs import PRESETS, TEST_PIPELINE, get_preset
from hrnet_keras.model import create_model

IMAGE_SIZE = TEST_PIPELINE.crop


def _numel(shape):
    return math.prod(d for d in shape[1:])


def layer_flops(layer):
    """FLOPs of one layer for a batch of one, by the mmcv 1.x rules."""
    if isinstance(layer, layers.Conv2D):
        kh, kw, c_in_per_group, c_out = layer.kernel.shape
        spatial = _numel(layer.output.shape) // c_out
        flops = kh * kw * c_in_per_group * c_out * spatial
        if layer.use_bias:
            flops += c_out * spatial
        return flops
    if isinstance(layer, layers.BatchNormalization):
        return 2 * _numel(layer.input.shape)
    if isinstance(layer, layers.ReLU):
        return _numel(layer.output.shape)
    if isinstance(layer, (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)):
        return _numel(layer.input.shape)
    if isinstance(layer, layers.UpSampling2D):
        return _numel(layer.output.shape)
    if isinstance(layer, layers.Dense):
        return layer.kernel.shape[0] * layer.units + (layer.units if layer.use_bias else 0)
    return 0


def model_flops(model, exclude=()):
    """Summed FLOPs of the model's layers, leaving out layers named in `exclude`."""
    return sum(layer_flops(layer) for layer in model.layers if layer.name not in exclude)


def trainable_params(model):
    return sum(math.prod(w.shape) for w in model.trainable_weights)


@functools.lru_cache(maxsize=None)
def _measure_arch(arch, image_size):
    model = create_model(arch, input_shape=(image_size, image_size, 3))
    return trainable_params(model), model_flops(model, exclude={layer_name("head.fc")})


def measure(name, image_size=IMAGE_SIZE):
    """(params, flops) of a row: params of the classifier, FLOPs of backbone + neck.

    Rows of one architecture are measured once per process.
    """
    return _measure_arch(get_preset(name).arch, image_size)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m hrnet_keras.complexity",
        description="Params and FLOPs of the Keras HRNet beside the published table.",
    )
    parser.add_argument("names", nargs="*", help="row names (see --all)")
    parser.add_argument(
        "--all", action="store_true", help="every row (the mmcls table and timm's weights)"
    )
    args = parser.parse_args(argv)
    names = list(PRESETS) if args.all else args.names
    if not names:
        parser.error("give row names or --all")
    for name in names:
        get_preset(name)
    header = (
        f"{'model':<30}{'params':>14}{'published':>14}{'flops':>16}{'published':>16}"
        f"{'timm GMACs':>11}  ok"
    )
    print(header)
    failures = 0
    for name in names:
        preset = get_preset(name)
        params, flops = measure(name)
        ok = params == preset.params and flops == preset.flops
        failures += not ok
        gmacs = f"{preset.timm_gmacs:.2f}" if preset.timm_gmacs else "-"
        print(
            f"{name:<30}{params:>14,}{preset.params:>14,}{flops:>16,}{preset.flops:>16,}"
            f"{gmacs:>11}  {'yes' if ok else 'NO'}",
            flush=True,
        )
    if failures:
        print(f"{failures} row(s) differ from the published table.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
