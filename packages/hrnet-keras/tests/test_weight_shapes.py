"""`weight_shapes`: the tensors of a row's `.weights.h5`, derived from its configuration."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from hrnet_keras.configs import PRESETS, get_preset
from hrnet_keras.weight_shapes import expected_tensors, first_mismatch


@pytest.fixture(scope="module")
def w18_file(tmp_path_factory):
    from hrnet_keras import network

    model = network.classifier("hrnet-w18")
    path = tmp_path_factory.mktemp("shapes") / "hrnet-w18.weights.h5"
    model.save_weights(path)
    names = [layer.name for layer in model.layers if layer.weights]
    return path, names


def _shapes(path):
    shapes = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda k, v: shapes.update({k: v.shape}) if isinstance(v, h5py.Dataset) else None
        )
    return shapes


def test_derived_tensors_are_those_keras_saves(w18_file):
    from hrnet_keras.architecture import torch_prefix

    path, keras_layers = w18_file
    expected = expected_tensors("hrnet-w18")
    assert {k: v[1] for k, v in expected.items()} == _shapes(path)
    # Each tensor is named after the Keras layer that holds it, in Keras' order.
    derived_layers = list(dict.fromkeys(layer for layer, _ in expected.values()))
    assert derived_layers == [torch_prefix(n) for n in keras_layers]
    assert first_mismatch("hrnet-w18", _shapes(path)) is None


@pytest.mark.parametrize("arch", ["hrnet-w18-small", "hrnet-w18-small-v2"])
def test_other_layouts_derive_as_keras_saves(arch, tmp_path):
    """Stage 1 and the stages read from each architecture's config (timm's small ones)."""
    from hrnet_keras import network

    name = next(p.name for p in PRESETS.values() if p.arch == arch)
    path = tmp_path / "small.weights.h5"
    network.classifier(name).save_weights(path)
    assert {k: v[1] for k, v in expected_tensors(name).items()} == _shapes(path)


@pytest.mark.parametrize("name", list(PRESETS))
def test_derived_parameters_add_up_to_the_table(name):
    # Trainable tensors only: BatchNorm's moving mean and variance (vars 2, 3) are not counted.
    tensors = expected_tensors(name)
    trainable = [
        shape
        for key, (_, shape) in tensors.items()
        if not (key.startswith("layers/batch_normalization") and key[-1] in "23")
    ]
    assert sum(int(np.prod(s)) for s in trainable) == get_preset(name).params


def test_another_rows_file_names_the_first_tensor(w18_file):
    path, _ = w18_file
    message = first_mismatch("hrnet-w32", _shapes(path))
    assert message == (
        "tensor layers/conv2d_15/vars/0 (backbone.transition1.0.0) has shape (3, 3, 256, 18), "
        "hrnet-w32 needs (3, 3, 256, 32)"
    )
    fewer = {k: v for k, v in _shapes(path).items() if k != "layers/dense/vars/1"}
    assert first_mismatch("hrnet-w18", fewer) == (
        "it has no tensor layers/dense/vars/1 (head.fc, shape (1000,))"
    )
    more = {**_shapes(path), "layers/dense_1/vars/0": (3,)}
    assert "1 tensor(s) that hrnet-w18 has not, first layers/dense_1/vars/0" in first_mismatch(
        "hrnet-w18", more
    )


def test_derivation_imports_no_keras():
    code = (
        "import sys; from hrnet_keras.weight_shapes import expected_tensors; "
        "expected_tensors('hrnet-w64'); assert 'keras' not in sys.modules, 'keras imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
