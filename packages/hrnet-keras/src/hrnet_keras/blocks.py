"""HRNet building blocks as functions over Keras layers.

Every weight-bearing layer is named after its key prefix in the mmpretrain
checkpoint with "." spelled "__" (torch rejects dots in Keras' torch-backend
parameter names): `backbone.stage2.0.branches.1.3.conv2` is the layer
`backbone__stage2__0__branches__1__3__conv2`. Loading a checkpoint is a plain
map from layer name to tensor names (`torch_prefix`).
"""

import contextlib
import contextvars

import keras
from keras import layers

from hrnet_keras.configs import BN_EPSILON, BN_MOMENTUM
from hrnet_keras.initializers import NUMPY_CONV_INIT


SEPARATOR = "__"
_FOLDED = contextvars.ContextVar("hrnet_keras_folded", default=False)


def layer_name(torch_prefix):
    """Keras layer name for a torch module path: `a.b.0` -> `a__b__0`."""
    return torch_prefix.replace(".", SEPARATOR)


def torch_prefix(name):
    """The torch module path a Keras layer name stands for (inverse of `layer_name`)."""
    return name.replace(SEPARATOR, ".")


def batchnorm_name(conv):
    """The name of the BatchNorm that `conv_bn` puts after the conv named `conv` (layer
    names or torch prefixes): mmpretrain's `conv1` -> `bn1`, `conv` -> `bn`, `0` -> `1`
    in the last part; None for names outside these patterns."""
    sep = SEPARATOR if SEPARATOR in conv else "."
    head, _, last = conv.rpartition(sep)
    if last.startswith("conv") and last[4:].isdigit() or last == "conv":
        last = "bn" + last[4:]
    elif last == "0":
        last = "1"
    else:
        return None
    return head + sep + last if head else last


def channel_axis():
    return -1 if keras.config.image_data_format() == "channels_last" else 1


@contextlib.contextmanager
def folded():
    """Inside, `conv_bn` builds each pair already folded: a conv with a bias, then a
    `keras.layers.Identity` named as its BatchNorm (the layers `fold_batchnorm` makes)."""
    token = _FOLDED.set(True)
    try:
        yield
    finally:
        _FOLDED.reset(token)


def conv_bn(x, filters, kernel_size, *, conv, bn, strides=1, relu=True):
    """Conv (no bias) + BatchNorm (+ ReLU), padded like torch's `padding=k//2`.

    Keras' `padding="same"` pads bottom/right only for stride 2, so stride-2
    convs pad one pixel on every side explicitly and run `valid`. `bn` must be
    `batchnorm_name(conv)`: the pair is known by its names (BatchNorm folding).
    Under `folded()`: conv with a bias + Identity.
    """
    if bn != batchnorm_name(conv):
        raise ValueError(f"conv_bn: BatchNorm {bn!r} is not batchnorm_name({conv!r})")
    padding = "same"
    if strides != 1 and kernel_size > 1:
        x = layers.ZeroPadding2D(kernel_size // 2, name=layer_name(f"{conv}.pad"))(x)
        padding = "valid"
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=_FOLDED.get(),
        kernel_initializer=NUMPY_CONV_INIT,
        name=layer_name(conv),
    )(x)
    if _FOLDED.get():
        x = layers.Identity(name=layer_name(bn))(x)
    else:
        x = layers.BatchNormalization(
            axis=channel_axis(), epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=layer_name(bn)
        )(x)
    if relu:
        x = layers.ReLU(name=layer_name(f"{bn}.relu"))(x)
    return x


def _residual(x, shortcut, name):
    x = layers.Add(name=layer_name(f"{name}.add"))([x, shortcut])
    return layers.ReLU(name=layer_name(f"{name}.relu"))(x)


def _shortcut(x, filters, name):
    if x.shape[channel_axis()] == filters:
        return x
    return conv_bn(
        x, filters, 1, conv=f"{name}.downsample.0", bn=f"{name}.downsample.1", relu=False
    )


def basic_block(x, filters, name):
    """Two 3x3 conv-BN pairs with an identity shortcut (expansion 1)."""
    y = conv_bn(x, filters, 3, conv=f"{name}.conv1", bn=f"{name}.bn1")
    y = conv_bn(y, filters, 3, conv=f"{name}.conv2", bn=f"{name}.bn2", relu=False)
    return _residual(y, _shortcut(x, filters, name), name)


def bottleneck_block(x, filters, name):
    """1x1 -> 3x3 -> 1x1 (to `filters`, mid `filters // 4`), 1x1 projection shortcut."""
    mid = filters // 4
    y = conv_bn(x, mid, 1, conv=f"{name}.conv1", bn=f"{name}.bn1")
    y = conv_bn(y, mid, 3, conv=f"{name}.conv2", bn=f"{name}.bn2")
    y = conv_bn(y, filters, 1, conv=f"{name}.conv3", bn=f"{name}.bn3", relu=False)
    return _residual(y, _shortcut(x, filters, name), name)


def transition(features, channels, name):
    """Adapt the previous stage's branches to `channels` (one more branch).

    Existing branches pass through unless their width changes (3x3 conv);
    the new branch is a 3x3 stride-2 conv from the last previous branch.
    """
    outputs = []
    for i, filters in enumerate(channels):
        if i < len(features):
            x = features[i]
            if x.shape[channel_axis()] != filters:
                x = conv_bn(x, filters, 3, conv=f"{name}.{i}.0", bn=f"{name}.{i}.1")
        else:
            x = conv_bn(
                features[-1],
                filters,
                3,
                strides=2,
                conv=f"{name}.{i}.0.0",
                bn=f"{name}.{i}.0.1",
            )
        outputs.append(x)
    return outputs


def _fuse_input(x, i, j, channels, name):
    """Branch j resized and re-channelled to join branch i."""
    prefix = f"{name}.fuse_layers.{i}.{j}"
    if j > i:
        x = conv_bn(x, channels[i], 1, conv=f"{prefix}.0", bn=f"{prefix}.1", relu=False)
        factor = 2 ** (j - i)
        return layers.UpSampling2D(
            factor, interpolation="nearest", name=layer_name(f"{prefix}.up")
        )(x)
    steps = i - j
    for k in range(steps):
        last = k == steps - 1
        x = conv_bn(
            x,
            channels[i] if last else channels[j],
            3,
            strides=2,
            conv=f"{prefix}.{k}.0",
            bn=f"{prefix}.{k}.1",
            relu=not last,
        )
    return x


def residual_block(kind):
    """The block function for a config's block name: "basic" or "bottleneck"."""
    blocks = {"basic": basic_block, "bottleneck": bottleneck_block}
    if kind not in blocks:
        raise ValueError(f"Unknown HRNet block {kind!r}; known: {', '.join(blocks)}.")
    return blocks[kind]


def hr_module(features, channels, num_blocks, name, block="basic"):
    """Parallel branches of `num_blocks` blocks each, then every branch fused into every other.

    `channels` are the branches' output channels (a Bottleneck's are 4x its planes).
    """
    make_block = residual_block(block)
    branches = []
    for b, (x, filters) in enumerate(zip(features, channels)):
        for k in range(num_blocks):
            x = make_block(x, filters, f"{name}.branches.{b}.{k}")
        branches.append(x)
    if len(branches) == 1:
        return branches
    fused = []
    for i in range(len(branches)):
        terms = [
            x if j == i else _fuse_input(x, i, j, channels, name) for j, x in enumerate(branches)
        ]
        y = layers.Add(name=layer_name(f"{name}.fuse_layers.{i}.add"))(terms)
        fused.append(layers.ReLU(name=layer_name(f"{name}.fuse_layers.{i}.relu"))(y))
    return fused


def increase_layer(x, index, filters, name):
    """HRFuseScales' `increase_layers.<index>` (timm's `incre_modules`): one Bottleneck."""
    return bottleneck_block(x, filters, f"{name}.increase_layers.{index}.0")


def fuse_scales(features, neck_channels, out_channels, name):
    """mmpretrain's HRFuseScales: widen each branch, sum top-down at stride 2."""
    feat = None
    for i, (x, filters) in enumerate(zip(features, neck_channels)):
        x = increase_layer(x, i, filters, name)
        if feat is None:
            feat = x
            continue
        feat = conv_bn(
            feat,
            filters,
            3,
            strides=2,
            conv=f"{name}.downsample_layers.{i - 1}.conv",
            bn=f"{name}.downsample_layers.{i - 1}.bn",
        )
        feat = layers.Add(name=layer_name(f"{name}.downsample_layers.{i - 1}.add"))([feat, x])
    return conv_bn(
        feat, out_channels, 1, conv=f"{name}.final_layer.conv", bn=f"{name}.final_layer.bn"
    )
