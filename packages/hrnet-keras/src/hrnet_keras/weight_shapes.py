"""The tensors a row's `.weights.h5` must hold, derived from `configs` without Keras.

Keras saves a functional model's weights as `layers/<class>_<n>/vars/<i>`: `<class>`
is the layer class in snake case, `<n>` counts that class over `model.layers`, the
order Keras' `map_graph` gives (deepest first, ties in the traversal order from the
outputs). `expected_tensors` records `architecture`'s graph, the one `network.build`
makes in Keras, and replays that order, so a file's shapes can be checked on a driver
that never imports Keras; `tests` compare it with a built model.
"""

import collections

from hrnet_keras import architecture
from hrnet_keras.configs import get_arch


class _Graph:
    """`architecture`'s layer constructors, recording each call as an op: (Keras' class
    name in snake case, torch module path, input op ids, output channels, var shapes)."""

    def __init__(self):
        self.ops = []

    def _add(self, kind, name, inputs, channels, shapes=()):
        self.ops.append((kind, name, tuple(inputs), channels, tuple(shapes)))
        return len(self.ops) - 1

    def channels(self, op):
        return self.ops[op][3]

    def input(self, name, channels=3):
        return self._add("input_layer", name, [], channels)

    def zero_padding(self, x, padding, name):
        return self._add("zero_padding2d", name, [x], self.channels(x))

    def conv(self, x, filters, kernel_size, *, strides, padding, name):
        shape = (kernel_size, kernel_size, self.channels(x), filters)
        return self._add("conv2d", name, [x], filters, [shape])

    def batch_norm(self, x, name):
        channels = self.channels(x)
        return self._add("batch_normalization", name, [x], channels, [(channels,)] * 4)

    def relu(self, x, name):
        return self._add("re_lu", name, [x], self.channels(x))

    def add(self, inputs, name):
        return self._add("add", name, inputs, self.channels(inputs[0]))

    def upsample(self, x, factor, name):
        return self._add("up_sampling2d", name, [x], self.channels(x))

    def global_pool(self, x, kind, name):
        kinds = {"avg": "global_average_pooling2d", "max": "global_max_pooling2d"}
        return self._add(kinds[kind], name, [x], self.channels(x))

    def dense(self, x, units, activation, name):
        return self._add("dense", name, [x], units, [(self.channels(x), units), (units,)])

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


def recorded_classifier(name):
    """(the recorded graph, its output op) of row `name`'s full classifier; `graph.ops`
    lists each layer as (kind, torch-style name, inputs, channels, shapes) in build order."""
    graph = _Graph()
    return graph, architecture.classifier(graph, graph.input("pixel_values"), get_arch(name))


def expected_tensors(name):
    """{`layers/<class>_<n>/vars/<i>`: (torch-style layer name, shape)} of row `name`'s
    full classifier, as `model.save_weights` writes it."""
    graph, output = recorded_classifier(name)
    order = graph.keras_order(output)
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
