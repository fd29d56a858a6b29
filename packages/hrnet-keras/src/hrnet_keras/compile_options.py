"""The compiler settings HRNet's forward pass runs fastest with on this process's device.

Chosen by `benchmarks/cpu_path.py` (README "The plain CPU path"). Nothing here sets a
process-wide flag (`XLA_FLAGS`, TensorFlow's config): each is passed to one compile. This
module imports neither Keras nor a backend until a function is called.
"""

import functools

# jaxlib 0.10.2's XLA hands convolutions to YNNPACK on a CPU; HRNet's run faster through
# XLA's own (Eigen) convolutions. "" turns YNNPACK's fusions off for one compile.
JAX_CPU_OPTIONS = {"xla_cpu_experimental_ynn_fusion_type": ""}


@functools.cache
def jax_compiler_options():
    """`compiler_options` for `jax.jit` of a forward pass on JAX's default device:
    `JAX_CPU_OPTIONS` on a CPU where this jaxlib knows them, else None (its defaults)."""
    import jax

    if jax.default_backend() != "cpu":
        return None
    try:  # an experimental option can leave a later jaxlib: its defaults then
        jax.jit(lambda x: x + 1, compiler_options=JAX_CPU_OPTIONS).lower(1.0).compile()
    except Exception:  # jax raises its runtime error type: "No such compile option"
        return None
    return dict(JAX_CPU_OPTIONS)


@functools.cache
def tensorflow_jit_compile():
    """Whether TensorFlow's forward pass is compiled by XLA: on a GPU yes, on a CPU no
    (TensorFlow's own graph, its convolutions through oneDNN, is faster there)."""
    import tensorflow as tf

    return bool(tf.config.list_logical_devices("GPU"))
