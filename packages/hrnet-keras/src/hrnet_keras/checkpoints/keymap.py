"""The key map between Keras layers and torch tensors, and its strict application.

Each weight-bearing Keras layer is named after its torch module, so the map is
layer name + a fixed suffix per Keras variable, with a layout transform.
"""

import numpy as np
from keras import layers

from hrnet_keras.blocks import torch_prefix

from hrnet_keras.checkpoints.reader import CheckpointError


def _conv_kernel(w):  # torch OIHW -> Keras HWIO
    return np.transpose(w, (2, 3, 1, 0))


def _dense_kernel(w):  # torch (out, in) -> Keras (in, out)
    return np.transpose(w)


def _same(w):
    return w


def layer_key_map(layer):
    """[(keras variable, torch key, transform)] for one layer."""
    n = torch_prefix(layer.name)
    if isinstance(layer, layers.Conv2D):
        entries = [(layer.kernel, f"{n}.weight", _conv_kernel)]
        if layer.use_bias:
            entries.append((layer.bias, f"{n}.bias", _same))
        return entries
    if isinstance(layer, layers.BatchNormalization):
        return [
            (layer.gamma, f"{n}.weight", _same),
            (layer.beta, f"{n}.bias", _same),
            (layer.moving_mean, f"{n}.running_mean", _same),
            (layer.moving_variance, f"{n}.running_var", _same),
        ]
    if isinstance(layer, layers.Dense):
        return [(layer.kernel, f"{n}.weight", _dense_kernel), (layer.bias, f"{n}.bias", _same)]
    if layer.weights:
        raise TypeError(f"No key map for layer {n} ({type(layer).__name__}).")
    return []


def model_key_map(model):
    return [entry for layer in model.layers for entry in layer_key_map(layer)]


def branch_width(state):
    """The HRNet width C a mmcls-keyed state dict was trained with, or None."""
    w = state.get("backbone.transition1.0.0.weight")
    return None if w is None else int(w.shape[0])


def _ignored_prefixes(model):
    """Parts of a full classifier checkpoint that a headless model leaves out."""
    names = {torch_prefix(layer.name) for layer in model.layers}
    ignored = []
    if "head.fc" not in names:
        ignored.append("head.")
    if "neck.0.final_layer.conv" not in names:
        ignored.append("neck.")
    return tuple(ignored)


def assign_state(model, state, *, source="checkpoint", expected_width=None, release=False):
    """Copy a mmcls-keyed state dict into `model`, using every tensor exactly once.

    BatchNorm's `num_batches_tracked` is read and dropped; a headless model
    (include_top=False, features_only) leaves the head (and neck) out. Fails
    naming the key on a missing tensor, an unused tensor, or a shape mismatch
    (with both shapes); a checkpoint of another width says which. With
    `release`, each tensor leaves `state` once assigned, so that the
    checkpoint's memory goes back as the model's fills.
    """
    width = branch_width(state)
    if expected_width is not None and width is not None and width != expected_width:
        raise CheckpointError(
            f"{source} is an HRNet-W{width} checkpoint (backbone.transition1.0.0.weight "
            f"has {width} filters) but the model is HRNet-W{expected_width}; "
            f"use --model hrnet-w{width}."
        )
    entries = model_key_map(model)
    missing = [key for _, key, _ in entries if key not in state]
    if missing:
        raise CheckpointError(
            f"{source} lacks {len(missing)} tensor(s) the model needs, first: {missing[0]}."
        )
    for variable, key, transform in entries:  # shapes first: fail before any change
        shape = transform(np.broadcast_to(np.int8(0), state[key].shape)).shape  # no copy
        if shape != tuple(variable.shape):
            raise CheckpointError(
                f"{source}: tensor {key} has shape {tuple(state[key].shape)}, the Keras "
                f"variable {variable.path} needs {tuple(variable.shape)} "
                "(after the torch->Keras transpose)."
            )
    used = {key for _, key, _ in entries}
    used |= {
        f"{torch_prefix(layer.name)}.num_batches_tracked"
        for layer in model.layers
        if isinstance(layer, layers.BatchNormalization)
    }
    ignored = _ignored_prefixes(model)
    unused = [k for k in state if k not in used and not k.startswith(ignored)]
    if unused:
        raise CheckpointError(
            f"{source} has {len(unused)} tensor(s) the model does not use, first: "
            f"{unused[0]}. (Converting a classifier checkpoint needs include_top=True "
            "and the same number of classes.)"
        )
    for variable, key, transform in entries:  # one tensor at a time keeps memory flat
        value = state.pop(key) if release else state[key]
        variable.assign(np.ascontiguousarray(transform(np.asarray(value)), dtype=variable.dtype))
        del value
    return len(entries)
