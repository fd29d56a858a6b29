"""The torch runtime: a functional Keras model walked layer by layer, each layer lowered
to torch's own function (conv, pad, relu, add, upsample, pool, linear)."""

import functools
import warnings

import keras
import numpy as np


@functools.cache
def graph_walk_works():
    """Whether Keras' private graph walk (`_run_through_graph` of a functional model, which
    `graph_runner` uses) exists and runs a one-layer functional graph as the plain call does,
    with the operation it is given. Checked once per process."""
    x = keras.ops.convert_to_tensor(np.array([[1.0, 2.0]], dtype="float32"))
    try:  # Keras' own Model() walks the graph too: a missing walk fails right here
        inputs = keras.Input((2,))
        dense = keras.layers.Dense(2, kernel_initializer="ones", bias_initializer="ones")
        probe = keras.Model(inputs, dense(inputs))
        walk = probe._run_through_graph
        want = keras.ops.convert_to_numpy(probe(x, training=False))
        same = walk(x, operation_fn=lambda layer: layer)
        shifted = walk(x, operation_fn=lambda layer: lambda *a, **k: layer(*a, **k) + 1.0)
        same, shifted = keras.ops.convert_to_numpy(same), keras.ops.convert_to_numpy(shifted)
    except Exception:  # missing, or a changed private signature: take the public call
        return False
    return np.allclose(same, want) and np.allclose(shifted, want + 1.0)


def graph_runner(model, operation_fn):
    """`f(x)`: `model`'s layer graph run on `x` with each layer's computation replaced by
    `operation_fn(layer)`.

    Keras has no public API for this: it is the private graph walk of a functional
    `keras.Model`, taken only where `graph_walk_works()`. Otherwise `f` is the plain
    model call (same outputs, slower), with a warning.
    """
    if not graph_walk_works():
        warnings.warn(
            f"hrnet_keras.inference: Keras {keras.__version__}'s private graph walk "
            "(_run_through_graph) is missing or behaves otherwise; running the plain model "
            "call instead of the lowered graph",
            stacklevel=2,
        )
        return lambda x: model(x, training=False)
    return lambda x: model._run_through_graph(x, operation_fn=operation_fn)


def torch_op(layer):
    """`layer`'s inference computation as a plain torch function over NCHW tensors, its
    weights laid out once for torch (OIHW kernels); `layer.call` for anything else."""
    import torch
    import torch.nn.functional as F

    layers = keras.layers
    config = layer.get_config()
    nchw = config.get("data_format") == "channels_first"
    activation = _torch_activation(getattr(layer, "activation", None))
    if isinstance(layer, layers.Identity):
        return lambda x, **kwargs: x
    if isinstance(layer, layers.Permute):
        dims = (0, *config["dims"])
        return lambda x, **kwargs: x.permute(dims)
    if isinstance(layer, layers.Add):
        return lambda xs, **kwargs: sum(xs[1:], xs[0])
    if isinstance(layer, layers.ReLU) and not (
        layer.max_value or layer.negative_slope or layer.threshold
    ):
        return lambda x, **kwargs: torch.relu(x)
    padding = _torch_padding(layer) if isinstance(layer, layers.Conv2D) else None
    if padding is not None and nchw and activation is not None:
        weight = _detached(layer.kernel).permute(3, 2, 0, 1).contiguous()
        bias = _detached(layer.bias) if layer.use_bias else None
        options = dict(
            stride=layer.strides, padding=padding, dilation=layer.dilation_rate, groups=layer.groups
        )
        return lambda x, **kwargs: activation(F.conv2d(x, weight, bias, **options))
    if isinstance(layer, layers.ZeroPadding2D) and nchw:
        (top, bottom), (left, right) = layer.padding
        return lambda x, **kwargs: F.pad(x, (left, right, top, bottom))
    if isinstance(layer, layers.UpSampling2D) and nchw and layer.interpolation == "nearest":
        factor = tuple(layer.size)
        return lambda x, **kwargs: x.repeat_interleave(factor[0], 2).repeat_interleave(factor[1], 3)
    if isinstance(layer, layers.GlobalAveragePooling2D) and nchw and not layer.keepdims:
        return lambda x, **kwargs: x.mean((2, 3))
    if isinstance(layer, layers.Dense) and activation is not None:
        weight = _detached(layer.kernel).t().contiguous()
        bias = _detached(layer.bias) if layer.use_bias else None
        return lambda x, **kwargs: activation(F.linear(x, weight, bias))
    if isinstance(layer, layers.BatchNormalization):
        return lambda x, **kwargs: layer.call(x, training=False)
    return layer.call


def _detached(variable):
    return keras.ops.convert_to_tensor(variable).detach()


def _torch_padding(layer):
    """torch's `padding` for the conv `layer`, None where Keras pads otherwise."""
    if layer.padding == "valid":
        return 0
    if all(s == 1 for s in layer.strides) and all(k % 2 for k in layer.kernel_size):
        return tuple((k - 1) // 2 * d for k, d in zip(layer.kernel_size, layer.dilation_rate))
    return None


def _torch_activation(activation):
    if activation is keras.activations.linear:
        return lambda x: x
    if activation is keras.activations.relu:
        import torch

        return torch.relu
    return None
