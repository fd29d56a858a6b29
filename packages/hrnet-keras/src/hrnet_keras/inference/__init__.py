"""Inference-time rewrites that keep the model's function, and a fast forward pass.

`fold_batchnorm(model)` folds each BatchNorm into the conv before it (`folding`;
`load_folded_weights` reads a row's file straight into the folded twin, `folded_weights`).
`inference_function(model)` is the model's forward pass compiled where the backend
compiles (JAX `jit`, a TensorFlow graph, each with `hrnet_keras.compile_options`' settings)
and, on torch, run layer by layer as torch's own functions (`runtime`, `torch_ops`);
`export_jax_program` serialises it (`jax_export`).
`optimize_for_inference(model)` is both, with the layout that is fastest on the current
backend. The public names of these modules are importable from here.
"""

import keras

from hrnet_keras.inference.folded_weights import FoldedWeightsError, load_folded_weights
from hrnet_keras.inference.folding import fold_batchnorm, fold_weights, folded_model
from hrnet_keras.inference.jax_export import export_jax_program
from hrnet_keras.inference.runtime import inference_function
from hrnet_keras.inference.torch_ops import graph_runner, graph_walk_works

__all__ = [
    "FoldedWeightsError",
    "export_jax_program",
    "fold_batchnorm",
    "fold_weights",
    "folded_model",
    "graph_runner",
    "graph_walk_works",
    "inference_function",
    "load_folded_weights",
    "optimize_for_inference",
    "preferred_data_format",
]


def preferred_data_format():
    """The internal layout that runs fastest on this backend (measured, see benchmarks/)."""
    return "channels_first" if keras.backend.backend() == "torch" else "channels_last"


def optimize_for_inference(model, **options):
    """`inference_function(fold_batchnorm(model), **options)` in this backend's preferred
    layout; by default `f(float32 images) -> logits as NumPy`."""
    twin = fold_batchnorm(model, data_format=preferred_data_format())
    return inference_function(twin, **options)
