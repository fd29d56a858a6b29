"""Synthetic `.weights.h5` files with a row's tensors, written without Keras."""

import h5py
import numpy as np

from hrnet_keras.weight_shapes import expected_tensors


def write_weights(path, row, poison=None, value=np.nan):
    """A `.weights.h5` with row `row`'s tensors (ones), `poison` (a tensor's key) set to `value`."""
    with h5py.File(path, "w") as f:
        for key, (_, shape) in expected_tensors(row).items():
            data = np.ones(shape, "float32")
            if key == poison:
                data.flat[-1] = value
            f[key] = data
    return path
