"""A model's forward pass as a portable JAX program (`jax.export`)."""

import keras
import numpy as np

from hrnet_keras.inference.runtime import stateless_forward


def export_jax_program(model, batch_size, *, platforms=None, **options):
    """`model`'s forward pass as a portable JAX program: (StableHLO bytes, weights).

    The program is `jax.export`'s serialisation (a data format: no pickle, no
    compiled code) of `f(trainable, non_trainable, images)` for a fixed batch of
    `batch_size` images of the model's input shape, with the options of
    `inference_function`; the weights are NumPy arrays in argument order
    (trainable, then non-trainable). `platforms`: what it is lowered for
    (e.g. `("cuda",)`, from a CPU-only process), default this process's device.
    Run it with `jax.export.deserialize(program).call(trainable, non_trainable, x)`.
    JAX backend only.
    """
    import jax

    if keras.backend.backend() != "jax":
        raise ValueError(
            f"export_jax_program needs KERAS_BACKEND=jax, not {keras.backend.backend()}"
        )
    dtype = "uint8" if options.get("from_uint8") else "float32"
    spec = jax.ShapeDtypeStruct((batch_size, *model.input.shape[1:]), dtype)
    trainable = [np.asarray(v.value) for v in model.trainable_variables]
    non_trainable = [np.asarray(v.value) for v in model.non_trainable_variables]
    shapes = [
        [jax.ShapeDtypeStruct(w.shape, w.dtype) for w in ws] for ws in (trainable, non_trainable)
    ]
    exported = jax.export.export(jax.jit(stateless_forward(model, **options)), platforms=platforms)(
        *shapes, spec
    )
    return bytes(exported.serialize()), (trainable, non_trainable)
