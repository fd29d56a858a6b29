"""The forward passes `inference_function` compiles, on this process's backend (CPU)."""

import keras
import numpy as np
import pytest

from hrnet_keras import compile_options, create_model
from hrnet_keras.inference import inference_function


@pytest.fixture(scope="module")
def small():
    keras.utils.set_random_seed(0)
    return create_model("hrnet-w18-small", input_shape=(64, 64, 3), classifier_activation=None)


def test_the_function_still_runs_after_the_models_own_predict(small):
    # JAX: Keras' predict donates the variables' arrays to XLA and replaces them; a function
    # holding the arrays it was made with then failed with "Array has been deleted".
    x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype("float32")
    forward = inference_function(small)
    first = forward(x)
    predicted = small.predict(x, verbose=0)
    np.testing.assert_allclose(forward(x), first, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(predicted, first, rtol=1e-4, atol=1e-4)


def test_the_cpu_choice_is_what_the_function_compiles_with():
    backend = keras.backend.backend()
    if backend == "tensorflow":
        assert compile_options.tensorflow_jit_compile() is False  # no GPU here
        return
    if backend != "jax":
        pytest.skip("torch runs eagerly: no compiler choice")
    import jax

    assert compile_options.jax_compiler_options() == compile_options.JAX_CPU_OPTIONS

    def conv(x, w):
        return jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    args = (np.ones((1, 56, 56, 64), "float32"), np.ones((3, 3, 64, 64), "float32"))

    def compiled(options):
        return jax.jit(conv, compiler_options=options).lower(*args).compile().as_text()

    # The option does what compile_options says: XLA's defaults hand the convolution to
    # YNNPACK; the chosen options keep it in XLA (a jaxlib that changes this fails here).
    assert "__ynn_fusion" in compiled(None)
    assert "__ynn_fusion" not in compiled(compile_options.jax_compiler_options())
