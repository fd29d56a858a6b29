"""One Keras backend in its own process (KERAS_BACKEND is read once per process).

    python backend_worker.py save CHECKPOINT INPUTS OUT_DIR
        convert CHECKPOINT with hrnet_keras, write logits.npy and hrnet-w18.keras
    python backend_worker.py load INPUTS OUT_DIR MODEL.keras ...
        load each .keras with nothing but `import keras`, write logits-<i>.npy
"""

import os
import sys

import numpy as np


def _logits(model, x):
    import keras

    return keras.ops.convert_to_numpy(model(x, training=False))


def save(checkpoint, inputs, out_dir):
    from hrnet_keras import create_model
    from hrnet_keras.export import save_plain_keras

    x = np.load(inputs)
    model = create_model("hrnet-w18", weights=checkpoint, classifier_activation=None)
    np.save(os.path.join(out_dir, "logits.npy"), _logits(model, x))
    # as `export --format keras` writes it: loads without hrnet_keras
    save_plain_keras(model, os.path.join(out_dir, "hrnet-w18.keras"))


def load(inputs, out_dir, *models):
    import keras

    x = np.load(inputs)
    for i, path in enumerate(models):
        model = keras.models.load_model(path)
        np.save(os.path.join(out_dir, f"logits-{i}.npy"), _logits(model, x))
    assert "hrnet_keras" not in sys.modules, "loading must not need hrnet_keras"


if __name__ == "__main__":
    {"save": save, "load": load}[sys.argv[1]](*sys.argv[2:])
