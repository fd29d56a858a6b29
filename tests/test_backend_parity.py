"""Converted checkpoints against the mmpretrain reference, on this process's backend."""

import keras
import numpy as np
import pytest
import reference_model

from hrnet_keras import create_model

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def w18():
    return create_model("hrnet-w18", classifier_activation=None)


@pytest.mark.parametrize("layout", ["mmcls", "official"])
def test_w18_logits_equal_the_reference(w18, layout, w18_files, images, reference_w18_logits):
    from hrnet_keras.checkpoints import load_checkpoint_into

    load_checkpoint_into(w18, w18_files[layout], "hrnet-w18")
    diff = float(
        np.abs(keras.ops.convert_to_numpy(w18(images, training=False)) - reference_w18_logits).max()
    )
    print(f"{keras.backend.backend()} hrnet-w18 {layout}: max |diff| {diff:.2e}")
    assert diff <= TOLERANCE


def test_optimized_inference_equals_the_reference(w18_files, images, reference_w18_logits):
    from hrnet_keras.inference import optimize_for_inference, preferred_data_format

    model = create_model("hrnet-w18", weights=w18_files["mmcls"], classifier_activation=None)
    forward = optimize_for_inference(model)
    diff = float(np.abs(forward(images) - reference_w18_logits).max())
    print(
        f"{keras.backend.backend()} hrnet-w18 folded BN, {preferred_data_format()}: max |diff| {diff:.2e}"
    )
    assert diff <= TOLERANCE


@pytest.mark.slow
def test_w48_ssld_logits_equal_the_reference(tmp_path, images):
    # Width is what W48 adds to W18's check, and it does not depend on the backend: the
    # widest model runs once, on the evaluator's backend (JAX); W18 covers every backend.
    if keras.backend.backend() != "jax":
        pytest.skip("W48 runs on the jax backend only; W18 checks this backend")
    ref = reference_model.randomize(reference_model.build_reference("hrnet-w48-ssld"), seed=5)
    want = reference_model.reference_logits(ref, images[:1])
    path = reference_model.save_mmcls(ref, tmp_path / "w48.pth")
    del ref
    model = create_model("hrnet-w48", weights=path, classifier_activation=None)
    diff = float(np.abs(keras.ops.convert_to_numpy(model(images[:1], training=False)) - want).max())
    print(f"{keras.backend.backend()} hrnet-w48-ssld: max |diff| {diff:.2e}")
    assert diff <= TOLERANCE


def test_this_process_runs_the_backend_pants_asked_for():
    import os

    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
