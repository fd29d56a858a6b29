"""`inference_function`: a model's fastest forward pass on each Keras backend."""

import keras
import numpy as np

from hrnet_keras.compile_options import jax_compiler_options, tensorflow_jit_compile
from hrnet_keras.inference.torch_ops import graph_runner, torch_op


def _head(model, call, *, from_uint8, top_k, finite, mean=None, std=None):
    """`call` (images -> outputs) wrapped with the options of `inference_function`."""
    from hrnet_keras.preprocessing import MEAN, STD

    channels_last = model.input.shape[-1] == 3
    shape = (3,) if channels_last else (3, 1, 1)
    mean = np.asarray(MEAN if mean is None else mean, "float32").reshape(shape)
    std = np.asarray(STD if std is None else std, "float32").reshape(shape)

    def body(x):
        if from_uint8:
            x = (keras.ops.cast(x, "float32") - mean) / std
        y = call(x)
        out = keras.ops.top_k(y, top_k)[1] if top_k else y
        if finite:
            return out, keras.ops.all(keras.ops.isfinite(y), axis=-1)
        return out

    return body


def inference_function(
    model,
    *,
    from_uint8=False,
    top_k=None,
    finite=False,
    mean=None,
    std=None,
    to_numpy=True,
    jit_compile="auto",
    compiler_options="auto",
):
    """`f(images) -> outputs`, the fastest forward pass this backend offers.

    JAX: `jax.jit` over `model.stateless_call`, the weights passed as arguments.
    TensorFlow: `tf.function`, under XLA on a GPU. torch: no autograd, the graph
    walked with each layer lowered to torch's own function (conv, pad, relu, add,
    upsample, pool, linear; kernels laid out OIHW once), `layer.call` for other
    layers: Keras' per-call bookkeeping and per-conv layout permutes cost more
    than a small conv on a CPU. Compiling backends compile once per input shape:
    keep the batch size fixed (pad the last batch). JAX and TensorFlow read the
    model's weights at each call, torch's lowered layers when the function is made.

    `from_uint8`: the images are 0-255 RGB (uint8 is 4x fewer bytes to move),
    normalised inside the function with `mean` and `std` (0-255 RGB; default the
    table's, `hrnet_keras.preprocessing.MEAN` / `STD`). `top_k`:
    return the indices of the k largest outputs per image (int32, largest
    first) instead of the outputs. `finite`: return `(outputs, ok)`, `ok[i]` true
    where every output of image i is finite (a NaN logit has no top-k).
    `to_numpy=False` returns the backend's own tensors without waiting for them
    (convert with `keras.ops.convert_to_numpy`).

    `jit_compile` (TensorFlow): XLA (True) or TensorFlow's own graph (False);
    "auto": XLA on a GPU, not on a CPU (`compile_options.tensorflow_jit_compile`).
    `compiler_options` (JAX): XLA options for this function's compile only (a dict,
    or None for XLA's defaults); "auto": `compile_options.jax_compiler_options()`,
    on a CPU XLA's own convolutions instead of YNNPACK's. `XLA_FLAGS` is left alone.
    """
    options = dict(from_uint8=from_uint8, top_k=top_k, finite=finite, mean=mean, std=std)
    convert = keras.ops.convert_to_numpy if to_numpy else (lambda y: y)

    def out(y):
        return keras.tree.map_structure(convert, y)

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if compiler_options == "auto":
            compiler_options = jax_compiler_options()
        forward = jax.jit(stateless_forward(model, **options), compiler_options=compiler_options)

        def run(x):
            # The model's current arrays at each call: Keras' own `predict` donates them
            # to XLA and puts new ones in the variables, deleting the arrays it was given.
            trainable = [v.value for v in model.trainable_variables]
            non_trainable = [v.value for v in model.non_trainable_variables]
            return out(forward(trainable, non_trainable, x))

        return run
    if backend == "tensorflow":
        import tensorflow as tf

        body = _head(model, lambda x: model(x, training=False), **options)
        if jit_compile == "auto":
            jit_compile = tensorflow_jit_compile()
        forward = tf.function(body, jit_compile=jit_compile)
        return lambda x: out(forward(tf.convert_to_tensor(x)))
    if backend == "torch":
        import torch

        lowered = {layer.name: torch_op(layer) for layer in model.layers}
        forward = _head(model, graph_runner(model, lambda layer: lowered[layer.name]), **options)

        def run(x):
            with torch.inference_mode():
                return out(forward(keras.ops.convert_to_tensor(x)))

        return run
    forward = _head(model, lambda x: model(x, training=False), **options)
    return lambda x: out(forward(keras.ops.convert_to_tensor(x)))


def stateless_forward(model, **options):
    """`f(trainable, non_trainable, x)`: the model as a pure function of its weights (JAX)."""

    def forward(trainable, non_trainable, x):
        call = _head(
            model,
            lambda x: model.stateless_call(trainable, non_trainable, x, training=False)[0],
            **options,
        )
        return call(x)

    return forward
