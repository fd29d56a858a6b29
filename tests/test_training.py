"""`model.fit` trains HRNet on this process's backend: the loss falls and the weights change.

One batch of 4 random 64 px images, fitted twice (one step per epoch): each epoch's loss is
that step's loss before its update, with BatchNorm on the batch's statistics, so the first
and second epochs' losses are the same batch's loss before training and after one update.
Most of the time is the first step's compile (XLA on JAX and TensorFlow).
"""

import keras
import numpy as np

from hrnet_keras import create_model

CLASSES, BATCH, SIZE, STEPS = 10, 4, 64, 2
KERNEL = "backbone__stage2__0__branches__0__0__conv1"  # a conv deep inside the backbone


def test_fit_lowers_the_loss_and_changes_the_weights():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, SIZE, SIZE, 3)).astype("float32")
    y = np.arange(BATCH) % CLASSES
    model = create_model("hrnet-w18-small", input_shape=(SIZE, SIZE, 3), classes=CLASSES)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    kernel = model.get_layer(KERNEL).kernel
    before = keras.ops.convert_to_numpy(kernel).copy()

    losses = model.fit(x, y, batch_size=BATCH, epochs=STEPS, verbose=0).history["loss"]

    change = float(np.abs(keras.ops.convert_to_numpy(kernel) - before).max())
    print(
        f"{keras.backend.backend()}: losses {[round(v, 4) for v in losses]}, {KERNEL} {change:.1e}"
    )
    assert len(losses) == STEPS and np.all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
    assert change > 1e-4, f"{KERNEL} changed by {change:.1e} only"
