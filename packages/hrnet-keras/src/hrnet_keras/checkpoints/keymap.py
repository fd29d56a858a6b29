"""The key map between Keras layers and torch tensors, and its strict application.

Each weight-bearing Keras layer is named after its torch module, so the map is
layer name + a fixed suffix per Keras variable, with a layout transform.
"""

import re

import numpy as np
from keras import layers

from hrnet_keras.architecture import torch_prefix
from hrnet_keras.configs import ARCHS

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


def _count(state, pattern):
    found = {m.group(1) for k in state if (m := re.match(pattern, k))}
    return len(found)


def state_layout(state):
    """(width, layer1 blocks, layer1 planes, modules per stage, blocks per branch per stage)
    of a mmcls-keyed state dict, as `arch_layout` gives them for an `ArchConfig`."""
    planes = state.get("backbone.layer1.0.conv1.weight")
    return (
        branch_width(state),
        _count(state, r"^backbone\.layer1\.(\d+)\."),
        None if planes is None else int(planes.shape[0]),
        tuple(_count(state, rf"^backbone\.stage{s}\.(\d+)\.") for s in (2, 3, 4)),
        tuple(_count(state, rf"^backbone\.stage{s}\.0\.branches\.0\.(\d+)\.") for s in (2, 3, 4)),
    )


def arch_layout(arch):
    """The `state_layout` that a checkpoint of `arch` (an `ArchConfig`) has."""
    return (
        arch.width,
        arch.layer1.num_blocks,
        arch.layer1.channels,
        tuple(s.num_modules for s in arch.stages),
        tuple(s.num_blocks for s in arch.stages),
    )


def checkpoint_arch(state):
    """The name of the architecture (configs.ARCHS) a mmcls-keyed state dict fits, or None."""
    layout = state_layout(state)
    for arch in ARCHS.values():
        if arch_layout(arch) == layout:
            return arch.name
    return None


def _ignored_prefixes(model):
    """Parts of a full classifier checkpoint that a headless model leaves out."""
    names = {torch_prefix(layer.name) for layer in model.layers}
    ignored = []
    if "head.fc" not in names:
        ignored.append("head.")
    if "neck.0.final_layer.conv" not in names:
        ignored.append("neck.")
    if "backbone.conv2" not in names:  # a stem-only feature model (out_indices=(0,))
        ignored += ["backbone.bn2.", "backbone.conv2.", "backbone.layer1.", "backbone.trans"]
        ignored += ["backbone.stage"]
    return tuple(ignored)


def assign_state(
    model, state, *, source="checkpoint", expected_width=None, expected_arch=None, release=False
):
    """Copy a mmcls-keyed state dict into `model`, using every tensor exactly once.

    BatchNorm's `num_batches_tracked` is read and dropped; a headless model
    (include_top=False, features_only) leaves the head (and neck) out. Fails
    naming the key on a missing tensor, an unused tensor, or a shape mismatch
    (with both shapes); a checkpoint of another width says which. With
    `release`, each tensor leaves `state` once assigned, so that the
    checkpoint's memory goes back as the model's fills. `expected_arch` (an
    architecture name) names the checkpoint's own architecture when they differ.
    """
    width, found = branch_width(state), checkpoint_arch(state)
    if expected_width is not None and width is not None and width != expected_width:
        raise CheckpointError(
            f"{source} is an HRNet-W{width} checkpoint (backbone.transition1.0.0.weight "
            f"has {width} filters) but the model is HRNet-W{expected_width}; "
            f"use --model {found or f'hrnet-w{width}'}."
        )
    if expected_arch is not None and found is not None and found != expected_arch:
        raise CheckpointError(
            f"{source} is an {found} checkpoint (its stage layout: width, blocks, modules) "
            f"but the model is {expected_arch}; use --model {found}."
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
