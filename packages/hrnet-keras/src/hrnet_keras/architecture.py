"""The HRNet graph, written once and without Keras: mmpretrain's HRNet + HRFuseScales + head.

Every function takes `ops`, the layer constructors that make it real: `blocks.KerasLayers`
builds Keras layers (`network.py`), `weight_shapes` records each layer's tensors.
`ops` has `channels(x)` and one method per layer kind, each taking the input(s) first and
the layer's torch module path as `name`: `zero_padding`, `conv`, `batch_norm`, `relu`,
`add`, `upsample`, `global_pool`, `dense`.

Layers are named after their key prefix in the mmpretrain checkpoint; Keras spells
"." as "__" (torch rejects dots in Keras' torch-backend parameter names):
`backbone.stage2.0.branches.1.3.conv2` is the layer `backbone__stage2__0__branches__1__3__conv2`.
"""

from hrnet_keras.configs import (
    BLOCK_EXPANSION,
    IMAGENET_CLASSES,
    NECK_CHANNELS,
    NECK_OUT_CHANNELS,
    STEM_CHANNELS,
)

SEPARATOR = "__"


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


def conv_bn(ops, x, filters, kernel_size, *, conv, bn, strides=1, relu=True):
    """Conv (no bias) + BatchNorm (+ ReLU), padded like torch's `padding=k//2`.

    Keras' `padding="same"` pads bottom/right only for stride 2, so stride-2
    convs pad one pixel on every side explicitly and run `valid`. `bn` must be
    `batchnorm_name(conv)`: the pair is known by its names (BatchNorm folding).
    """
    if bn != batchnorm_name(conv):
        raise ValueError(f"conv_bn: BatchNorm {bn!r} is not batchnorm_name({conv!r})")
    padding = "same"
    if strides != 1 and kernel_size > 1:
        x = ops.zero_padding(x, kernel_size // 2, name=f"{conv}.pad")
        padding = "valid"
    x = ops.conv(x, filters, kernel_size, strides=strides, padding=padding, name=conv)
    x = ops.batch_norm(x, name=bn)
    if relu:
        x = ops.relu(x, name=f"{bn}.relu")
    return x


def _residual(ops, x, shortcut, name):
    x = ops.add([x, shortcut], name=f"{name}.add")
    return ops.relu(x, name=f"{name}.relu")


def _shortcut(ops, x, filters, name):
    if ops.channels(x) == filters:
        return x
    return conv_bn(
        ops, x, filters, 1, conv=f"{name}.downsample.0", bn=f"{name}.downsample.1", relu=False
    )


def basic_block(ops, x, filters, name):
    """Two 3x3 conv-BN pairs with an identity shortcut (expansion 1)."""
    y = conv_bn(ops, x, filters, 3, conv=f"{name}.conv1", bn=f"{name}.bn1")
    y = conv_bn(ops, y, filters, 3, conv=f"{name}.conv2", bn=f"{name}.bn2", relu=False)
    return _residual(ops, y, _shortcut(ops, x, filters, name), name)


def bottleneck_block(ops, x, filters, name):
    """1x1 -> 3x3 -> 1x1 (to `filters`, mid `filters // 4`), 1x1 projection shortcut."""
    mid = filters // 4
    y = conv_bn(ops, x, mid, 1, conv=f"{name}.conv1", bn=f"{name}.bn1")
    y = conv_bn(ops, y, mid, 3, conv=f"{name}.conv2", bn=f"{name}.bn2")
    y = conv_bn(ops, y, filters, 1, conv=f"{name}.conv3", bn=f"{name}.bn3", relu=False)
    return _residual(ops, y, _shortcut(ops, x, filters, name), name)


def residual_block(kind):
    """The block function for a config's block name: "basic" or "bottleneck"."""
    blocks = {"basic": basic_block, "bottleneck": bottleneck_block}
    if kind not in blocks:
        raise ValueError(f"Unknown HRNet block {kind!r}; known: {', '.join(blocks)}.")
    return blocks[kind]


def transition(ops, features, channels, name):
    """Adapt the previous stage's branches to `channels` (one more branch).

    Existing branches pass through unless their width changes (3x3 conv);
    the new branch is a 3x3 stride-2 conv from the last previous branch.
    """
    outputs = []
    for i, filters in enumerate(channels):
        if i < len(features):
            x = features[i]
            if ops.channels(x) != filters:
                x = conv_bn(ops, x, filters, 3, conv=f"{name}.{i}.0", bn=f"{name}.{i}.1")
        else:
            x = conv_bn(
                ops,
                features[-1],
                filters,
                3,
                strides=2,
                conv=f"{name}.{i}.0.0",
                bn=f"{name}.{i}.0.1",
            )
        outputs.append(x)
    return outputs


def _fuse_input(ops, x, i, j, channels, name):
    """Branch j resized and re-channelled to join branch i."""
    prefix = f"{name}.fuse_layers.{i}.{j}"
    if j > i:
        x = conv_bn(ops, x, channels[i], 1, conv=f"{prefix}.0", bn=f"{prefix}.1", relu=False)
        return ops.upsample(x, 2 ** (j - i), name=f"{prefix}.up")
    steps = i - j
    for k in range(steps):
        last = k == steps - 1
        x = conv_bn(
            ops,
            x,
            channels[i] if last else channels[j],
            3,
            strides=2,
            conv=f"{prefix}.{k}.0",
            bn=f"{prefix}.{k}.1",
            relu=not last,
        )
    return x


def hr_module(ops, features, channels, num_blocks, name, block="basic"):
    """Parallel branches of `num_blocks` blocks each, then every branch fused into every other.

    `channels` are the branches' output channels (a Bottleneck's are 4x its planes).
    """
    make_block = residual_block(block)
    branches = []
    for b, (x, filters) in enumerate(zip(features, channels)):
        for k in range(num_blocks):
            x = make_block(ops, x, filters, f"{name}.branches.{b}.{k}")
        branches.append(x)
    if len(branches) == 1:
        return branches
    fused = []
    for i in range(len(branches)):
        terms = [
            x if j == i else _fuse_input(ops, x, i, j, channels, name)
            for j, x in enumerate(branches)
        ]
        y = ops.add(terms, name=f"{name}.fuse_layers.{i}.add")
        fused.append(ops.relu(y, name=f"{name}.fuse_layers.{i}.relu"))
    return fused


def backbone(ops, inputs, arch):
    """Stem, layer1 and stages 2-4 of `arch` (an `ArchConfig`); returns (stem, branches).

    `stem` is the first conv's output (stride 2, timm's feature 0); `branches` the last
    stage's four outputs.
    """
    stem = conv_bn(
        ops, inputs, STEM_CHANNELS, 3, strides=2, conv="backbone.conv1", bn="backbone.bn1"
    )
    x = conv_bn(ops, stem, STEM_CHANNELS, 3, strides=2, conv="backbone.conv2", bn="backbone.bn2")
    layer1 = arch.layer1
    make_block = residual_block(layer1.block)
    for k in range(layer1.num_blocks):
        x = make_block(ops, x, layer1.out_channels, f"backbone.layer1.{k}")
    branches = [x]
    for s, stage in enumerate(arch.stages, start=2):
        expansion = BLOCK_EXPANSION[stage.block]
        channels = [c * expansion for c in arch.branch_channels[: stage.num_branches]]
        branches = transition(ops, branches, channels, f"backbone.transition{s - 1}")
        for m in range(stage.num_modules):
            branches = hr_module(
                ops, branches, channels, stage.num_blocks, f"backbone.stage{s}.{m}", stage.block
            )
    return stem, branches


def increase_layer(ops, x, index, name="neck.0"):
    """HRFuseScales' `increase_layers.<index>` (timm's `incre_modules`): one Bottleneck."""
    return bottleneck_block(ops, x, NECK_CHANNELS[index], f"{name}.increase_layers.{index}.0")


def fuse_scales(ops, branches, name="neck.0"):
    """mmpretrain's HRFuseScales: widen each branch, sum top-down at stride 2."""
    feat = None
    for i, x in enumerate(branches):
        x = increase_layer(ops, x, i, name)
        if feat is None:
            feat = x
            continue
        feat = conv_bn(
            ops,
            feat,
            NECK_CHANNELS[i],
            3,
            strides=2,
            conv=f"{name}.downsample_layers.{i - 1}.conv",
            bn=f"{name}.downsample_layers.{i - 1}.bn",
        )
        feat = ops.add([feat, x], name=f"{name}.downsample_layers.{i - 1}.add")
    return conv_bn(
        ops,
        feat,
        NECK_OUT_CHANNELS,
        1,
        conv=f"{name}.final_layer.conv",
        bn=f"{name}.final_layer.bn",
    )


def head(ops, x, classes=IMAGENET_CLASSES, activation=None):
    """Global average pooling (`neck.1`) and the linear classifier (`head.fc`)."""
    x = ops.global_pool(x, "avg", name="neck.1")
    return ops.dense(x, classes, activation=activation, name="head.fc")


def classifier(ops, inputs, arch, classes=IMAGENET_CLASSES, activation=None):
    """The full model: backbone, HRFuseScales neck, head; what the table's files hold."""
    _, branches = backbone(ops, inputs, arch)
    return head(ops, fuse_scales(ops, branches), classes, activation)
