"""Whether a row's saved weights fold into finite convs, checked on the file's tensors.

Folding a BatchNorm into the conv before it (`hrnet_keras.inference`) scales the conv's
kernel by `gamma / sqrt(moving_variance + epsilon)` per output channel: a variance with
`variance + epsilon <= 0` gives NaN or inf, and a finite but extreme one can overflow
float32. Either way every image then scores meaningless numbers, and a NaN feature can be
lost inside the network (XLA:CPU's fused ReLU and average pool turn NaN into 0), so the
logits look finite. `fold_problem` finds both from a `.weights.h5`'s tensors, by their
saved names (`weight_shapes.expected_tensors`), without Keras.
"""

import numpy as np

from hrnet_keras.configs import BN_EPSILON
from hrnet_keras.weight_shapes import expected_tensors, recorded_classifier

# A saved BatchNormalization's variables: vars/0 gamma, 1 beta, 2 moving_mean, 3 moving_variance.
GAMMA, BETA, MEAN, VARIANCE = range(4)


def conv_batchnorm_pairs(name):
    """[(conv's saved prefix, BatchNorm's saved prefix, BatchNorm's torch-style name)] of
    row `name`, each conv with the BatchNorm `conv_bn` puts after it, e.g.
    ("layers/conv2d_15", "layers/batch_normalization_17", "backbone.transition1.1.0.1")."""
    prefixes = {}
    for key, (layer, _) in expected_tensors(name).items():
        prefixes.setdefault(layer, key.rsplit("/vars/", 1)[0])
    graph, _ = recorded_classifier(name)
    pairs = []
    for (kind, conv, *_), (next_kind, bn, *_) in zip(graph.ops, graph.ops[1:]):
        if kind == "conv2d" and next_kind == "batch_normalization":
            pairs.append((prefixes[conv], prefixes[bn], bn))
    return pairs


def folded(kernel, gamma, beta, mean, variance, epsilon=BN_EPSILON):
    """(kernel, bias) of a bias-free conv with its BatchNorm folded in: computed in float64,
    returned in float32, as `inference.fold_weights` folds them."""
    with np.errstate(all="ignore"):  # NaN and inf are what the caller looks for
        scale = np.asarray(gamma, "float64") / np.sqrt(np.asarray(variance, "float64") + epsilon)
        kernel = (np.asarray(kernel, "float64") * scale).astype("float32")
        bias = (np.asarray(beta, "float64") - np.asarray(mean, "float64") * scale).astype("float32")
    return kernel, bias


def fold_problem(name, read):
    """None if every conv/BatchNorm pair of row `name` folds into finite float32 values;
    else one sentence naming the first BatchNorm (saved tensor and torch-style name) whose
    `variance + epsilon <= 0` or whose fold gives NaN or inf. `read(key)` returns the saved
    tensor `key` (e.g. an open `h5py.File`'s `f[key][()]`), or for a conv kernel its largest
    |value| per output channel (all the check uses of it)."""
    for conv, bn, layer in conv_batchnorm_pairs(name):
        stats = [np.asarray(read(f"{bn}/vars/{i}")) for i in (GAMMA, BETA, MEAN, VARIANCE)]
        variance = stats[VARIANCE].astype("float64")
        bad = np.flatnonzero(~(variance + BN_EPSILON > 0))
        if bad.size:
            c = int(bad[0])
            return (
                f"BatchNorm {layer} ({bn}/vars/{VARIANCE}) has moving_variance + epsilon <= 0 "
                f"in {bad.size} channel(s), first channel {c} ({variance[c]:g} + {BN_EPSILON:g})"
            )
        # The largest |kernel| of each output channel times its scale is that channel's
        # largest folded value (float64 products round monotonically): one pass in float32.
        kernel = np.asarray(read(f"{conv}/vars/0"))
        peaks = np.abs(kernel).reshape(-1, kernel.shape[-1]).max(axis=0)
        largest, bias = folded(peaks, *stats)
        channels = np.flatnonzero(~np.isfinite(largest) | ~np.isfinite(bias))
        if channels.size:
            return (
                f"folding BatchNorm {layer} ({bn}) into its conv gives NaN or inf in "
                f"{channels.size} output channel(s), first channel {int(channels[0])} "
                "(float32 overflow)"
            )
    return None
