"""A row's `.weights.h5` read straight into its folded twin, without the unfolded model."""

import contextlib
import io

import keras
import numpy as np

from hrnet_keras.architecture import batchnorm_name
from hrnet_keras.configs import BN_EPSILON
from hrnet_keras.inference.folding import fold_conv_bn

# Where `model.save_weights` files a layer of each class: "layers/<name>[_<n>]", the n-th
# layer of that class in `model.layers` order (what `keras.saving.KerasFileEditor` shows).
SAVED_NAMES = {
    "Conv2D": "conv2d",
    "BatchNormalization": "batch_normalization",
    "Dense": "dense",
}


class FoldedWeightsError(ValueError):
    """A `.weights.h5` whose layers do not map onto a folded twin; the message says where."""


def load_folded_weights(twin, path):
    """Set `twin` (built by `folded_model`) to the weights of a `.weights.h5` of its
    unfolded model, folded as `fold_weights` folds them, without building that model.

    The file is read with `keras.saving.KerasFileEditor`; its layers are matched by class
    and order, each BatchNorm to the Identity the twin holds in its place, and every array
    checked against the twin's shapes. Raises `FoldedWeightsError` naming the file and the
    layer where the file does not fit (then load the model and use `fold_weights`). The
    twin keeps its own initialisers.
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the editor prints the file's name
            saved = keras.saving.KerasFileEditor(path).weights_dict.get("layers", {})
    except Exception as exc:  # truncated, not HDF5, not a Keras file
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise FoldedWeightsError(f"{path}: KerasFileEditor cannot read it ({reason})") from None
    identities = {layer.name for layer in twin.layers if isinstance(layer, keras.layers.Identity)}
    counts, used, values, pending = {}, set(), {}, {}

    def take(cls_name, layer_name, shapes):
        base = SAVED_NAMES.get(cls_name)
        if base is None:
            raise FoldedWeightsError(f"{path}: no saved name known for {cls_name} {layer_name}")
        n = counts[base] = counts.get(base, -1) + 1
        key = base if n == 0 else f"{base}_{n}"
        arrays = saved.get(key) or {}
        got = [np.asarray(arrays[str(i)]) for i in range(len(shapes)) if str(i) in arrays]
        if len(arrays) != len(shapes) or any(a.shape != s for a, s in zip(got, shapes)):
            have = [np.shape(v) for v in arrays.values()]
            raise FoldedWeightsError(
                f"{path}: layers/{key} holds {have} where {layer_name} needs {shapes}"
            )
        used.add(key)
        return got

    for layer in twin.layers:
        bn = batchnorm_name(layer.name)
        if isinstance(layer, keras.layers.Conv2D) and bn in identities:  # a folded pair
            kernel_shape = tuple(layer.kernel.shape)
            pending[bn] = (layer, take("Conv2D", layer.name, [kernel_shape])[0])
        elif layer.name in pending:  # the unfolded model's BatchNorm, here an Identity
            conv, kernel = pending.pop(layer.name)
            statistics = take("BatchNormalization", layer.name, [(kernel.shape[-1],)] * 4)
            values[conv.name] = fold_conv_bn(kernel, 0.0, *statistics, BN_EPSILON)
        elif layer.weights:
            shapes = [tuple(w.shape) for w in layer.weights]
            values[layer.name] = take(type(layer).__name__, layer.name, shapes)
    unused = sorted(set(saved) - used)
    if unused or pending:
        raise FoldedWeightsError(
            f"{path}: the twin {twin.name} has no place for layers {unused[:5]} "
            f"({len(unused)}); is it the file of another row or head?"
        )
    for name, arrays in values.items():
        twin.get_layer(name).set_weights(arrays)
