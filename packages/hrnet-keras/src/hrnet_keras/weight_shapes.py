"""The tensors a row's `.weights.h5` must hold, derived from `configs` without Keras.

Keras saves a functional model's weights as `layers/<class>_<n>/vars/<i>`: `<class>`
is the layer class in snake case, `<n>` counts that class over `model.layers`, the
order Keras' `map_graph` gives (deepest first, ties in the traversal order from the
outputs). `expected_tensors` replays that order on a graph that mirrors
`network.build` (same layers, same calls), so a file's shapes can be checked on a
driver that never imports Keras; `tests` compare it with a built model.
"""

import collections

from hrnet_keras.configs import (
    IMAGENET_CLASSES,
    BLOCK_EXPANSION,
    NECK_CHANNELS,
    NECK_OUT_CHANNELS,
    STEM_CHANNELS,
    get_arch,
)

CLASSES = IMAGENET_CLASSES  # the table's head


class _Graph:
    """Operations with one call each: (kind, name, input ids, output channels, var shapes)."""

    def __init__(self):
        self.ops = []

    def add(self, kind, name, inputs, channels, shapes=()):
        self.ops.append((kind, name, tuple(inputs), channels, tuple(shapes)))
        return len(self.ops) - 1

    def channels(self, op):
        return self.ops[op][3]

    def conv_bn(self, x, filters, kernel, *, conv, bn, strides=1, relu=True):
        if strides != 1 and kernel > 1:
            x = self.add("zero_padding2d", f"{conv}.pad", [x], self.channels(x))
        x = self.add("conv2d", conv, [x], filters, [(kernel, kernel, self.channels(x), filters)])
        x = self.add("batch_normalization", bn, [x], filters, [(filters,)] * 4)
        if relu:
            x = self.add("re_lu", f"{bn}.relu", [x], filters)
        return x

    def residual(self, x, shortcut, name):
        x = self.add("add", f"{name}.add", [x, shortcut], self.channels(x))
        return self.add("re_lu", f"{name}.relu", [x], self.channels(x))

    def shortcut(self, x, filters, name):
        if self.channels(x) == filters:
            return x
        return self.conv_bn(
            x, filters, 1, conv=f"{name}.downsample.0", bn=f"{name}.downsample.1", relu=False
        )

    def basic_block(self, x, filters, name):
        y = self.conv_bn(x, filters, 3, conv=f"{name}.conv1", bn=f"{name}.bn1")
        y = self.conv_bn(y, filters, 3, conv=f"{name}.conv2", bn=f"{name}.bn2", relu=False)
        return self.residual(y, self.shortcut(x, filters, name), name)

    def bottleneck_block(self, x, filters, name):
        mid = filters // 4
        y = self.conv_bn(x, mid, 1, conv=f"{name}.conv1", bn=f"{name}.bn1")
        y = self.conv_bn(y, mid, 3, conv=f"{name}.conv2", bn=f"{name}.bn2")
        y = self.conv_bn(y, filters, 1, conv=f"{name}.conv3", bn=f"{name}.bn3", relu=False)
        return self.residual(y, self.shortcut(x, filters, name), name)

    def transition(self, features, channels, name):
        out = []
        for i, filters in enumerate(channels):
            if i < len(features):
                x = features[i]
                if self.channels(x) != filters:
                    x = self.conv_bn(x, filters, 3, conv=f"{name}.{i}.0", bn=f"{name}.{i}.1")
            else:
                x = self.conv_bn(
                    features[-1],
                    filters,
                    3,
                    strides=2,
                    conv=f"{name}.{i}.0.0",
                    bn=f"{name}.{i}.0.1",
                )
            out.append(x)
        return out

    def fuse_input(self, x, i, j, channels, name):
        prefix = f"{name}.fuse_layers.{i}.{j}"
        if j > i:
            x = self.conv_bn(x, channels[i], 1, conv=f"{prefix}.0", bn=f"{prefix}.1", relu=False)
            return self.add("up_sampling2d", f"{prefix}.up", [x], channels[i])
        steps = i - j
        for k in range(steps):
            last = k == steps - 1
            x = self.conv_bn(
                x,
                channels[i] if last else channels[j],
                3,
                strides=2,
                conv=f"{prefix}.{k}.0",
                bn=f"{prefix}.{k}.1",
                relu=not last,
            )
        return x

    def block(self, kind):
        return {"basic": self.basic_block, "bottleneck": self.bottleneck_block}[kind]

    def hr_module(self, features, channels, num_blocks, name, block="basic"):
        branches = []
        for b, (x, filters) in enumerate(zip(features, channels)):
            for k in range(num_blocks):
                x = self.block(block)(x, filters, f"{name}.branches.{b}.{k}")
            branches.append(x)
        if len(branches) == 1:
            return branches
        fused = []
        for i in range(len(branches)):
            terms = [
                x if j == i else self.fuse_input(x, i, j, channels, name)
                for j, x in enumerate(branches)
            ]
            y = self.add("add", f"{name}.fuse_layers.{i}.add", terms, channels[i])
            fused.append(self.add("re_lu", f"{name}.fuse_layers.{i}.relu", [y], channels[i]))
        return fused

    def classifier(self, arch):
        """The full 1000-class model of `network.classifier`; returns its output op."""
        x = self.add("input_layer", "pixel_values", [], 3)
        x = self.conv_bn(x, STEM_CHANNELS, 3, strides=2, conv="backbone.conv1", bn="backbone.bn1")
        x = self.conv_bn(x, STEM_CHANNELS, 3, strides=2, conv="backbone.conv2", bn="backbone.bn2")
        for k in range(arch.layer1.num_blocks):
            x = self.block(arch.layer1.block)(x, arch.layer1.out_channels, f"backbone.layer1.{k}")
        features = [x]
        for s, stage in enumerate(arch.stages, start=2):
            expansion = BLOCK_EXPANSION[stage.block]
            channels = [c * expansion for c in arch.branch_channels[: stage.num_branches]]
            features = self.transition(features, channels, f"backbone.transition{s - 1}")
            for m in range(stage.num_modules):
                features = self.hr_module(
                    features, channels, stage.num_blocks, f"backbone.stage{s}.{m}", stage.block
                )
        feat = None
        for i, (x, filters) in enumerate(zip(features, NECK_CHANNELS)):
            x = self.bottleneck_block(x, filters, f"neck.0.increase_layers.{i}.0")
            if feat is None:
                feat = x
                continue
            feat = self.conv_bn(
                feat,
                filters,
                3,
                strides=2,
                conv=f"neck.0.downsample_layers.{i - 1}.conv",
                bn=f"neck.0.downsample_layers.{i - 1}.bn",
            )
            feat = self.add("add", f"neck.0.downsample_layers.{i - 1}.add", [feat, x], filters)
        x = self.conv_bn(
            feat, NECK_OUT_CHANNELS, 1, conv="neck.0.final_layer.conv", bn="neck.0.final_layer.bn"
        )
        x = self.add("global_average_pooling2d", "neck.1", [x], NECK_OUT_CHANNELS)
        return self.add(
            "dense", "head.fc", [x], CLASSES, [(NECK_OUT_CHANNELS, CLASSES), (CLASSES,)]
        )

    def keras_order(self, output):
        """Op ids in the order of Keras' `map_graph`: deepest first, then traversal order."""
        index, finished, post_order = {}, set(), []
        stack = [(output, 0)]  # Keras' recursive _build_map_helper, one node per operation
        while stack:
            op, i = stack.pop()
            if i == 0:
                if op in finished:
                    continue
                index.setdefault(op, len(index))
            parents = self.ops[op][2]
            if i < len(parents):
                stack += [(op, i + 1), (parents[i], 0)]
            else:
                finished.add(op)
                post_order.append(op)
        depth = {}
        for op in reversed(post_order):
            d = depth.setdefault(op, 0)
            for parent in self.ops[op][2]:
                depth[parent] = max(depth.get(parent, 0), d + 1)
        return sorted(post_order, key=lambda op: (-depth[op], index[op]))


def expected_tensors(name):
    """{`layers/<class>_<n>/vars/<i>`: (torch-style layer name, shape)} of row `name`'s
    full classifier, as `model.save_weights` writes it."""
    graph = _Graph()
    order = graph.keras_order(graph.classifier(get_arch(name)))
    counts = collections.Counter()
    tensors = {}
    for op in order:
        kind, layer, _, _, shapes = graph.ops[op]
        n = counts[kind]
        counts[kind] += 1
        key = kind if n == 0 else f"{kind}_{n}"
        for i, shape in enumerate(shapes):
            tensors[f"layers/{key}/vars/{i}"] = (layer, shape)
    return tensors


def first_mismatch(name, shapes):
    """None if `shapes` ({dataset path: shape}, as read from a `.weights.h5`) are row
    `name`'s tensors; else one sentence naming the first tensor that differs."""
    expected = expected_tensors(name)
    shapes = {k: tuple(v) for k, v in shapes.items() if k.startswith("layers/")}
    for key, (layer, shape) in expected.items():
        if key not in shapes:
            return f"it has no tensor {key} ({layer}, shape {shape})"
        if shapes[key] != shape:
            return f"tensor {key} ({layer}) has shape {shapes[key]}, {name} needs {shape}"
    extra = [k for k in shapes if k not in expected]
    if extra:
        return f"it holds {len(extra)} tensor(s) that {name} has not, first {extra[0]}"
    return None
