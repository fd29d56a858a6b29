"""`--demo`: scikit-image's bundled photos in class folders, and seeded random weights."""

import os
import shutil
from pathlib import Path

from hrnet_eval.worker import ModelSpec

# Photos shipped inside the scikit-image wheel, each with its nearest ImageNet class.
PHOTOS = (
    ("chelsea.png", "n02123045"),  # tabby
    ("coffee.png", "n07920052"),  # espresso
    ("rocket.jpg", "n03773504"),  # missile
    ("astronaut.png", "n04350905"),  # suit
    ("motorcycle_left.png", "n03785016"),  # moped
    ("camera.png", "n04485082"),  # tripod
    ("horse.png", "n02389026"),  # sorrel
    ("brick.png", "n04326547"),  # stone wall
)
SEED = 0
BANNER = (
    "=" * 78
    + "\nDEMO: {models} with SEEDED RANDOM WEIGHTS on {n} photos from scikit-image.\n"
    "These accuracies MEAN NOTHING; this run only shows the machinery working.\n"
    "Evaluate for real with --data <ImageNet val> (see --help).\n"
    + "=" * 78
)


class DemoError(RuntimeError):
    """The demo's photos are not available."""


def photos_dir():
    try:
        import skimage.data
    except ImportError:
        raise DemoError("--demo needs scikit-image (pip install scikit-image).") from None
    return Path(skimage.data.__file__).parent


def write_demo_data(dest):
    """Copy the photos into class folders under `dest` (the class-folder layout); returns dest."""
    src = photos_dir()
    dest = Path(dest)
    for name, wnid in PHOTOS:
        photo = src / name
        if not photo.is_file():
            raise DemoError(f"scikit-image's sample photo {photo} is missing; reinstall scikit-image.")
        target = dest / wnid / name
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name("." + name)
            shutil.copyfile(photo, tmp)
            os.replace(tmp, target)
    return dest


def randomize(model, seed=SEED):
    """Seeded random weights whose predictions vary with the image.

    Kernels ~ N(0, 1/fan_in) (the classifier 8x wider, to spread the logits);
    BatchNorm gamma in [0.3, 0.7], small beta and mean, variance in [0.75, 1.25].
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            shape, name = tuple(weight.shape), weight.path.rsplit("/", 1)[-1]
            if name == "kernel":
                gain = 8.0 if len(shape) == 2 else 1.0
                values.append(rng.normal(0, gain / np.sqrt(np.prod(shape[:-1])), shape))
            elif name == "gamma":
                values.append(rng.uniform(0.3, 0.7, shape))
            elif name == "moving_variance":
                values.append(rng.uniform(0.75, 1.25, shape))
            else:  # beta, moving_mean, bias
                values.append(rng.normal(0, 0.1, shape))
        if values:
            layer.set_weights([v.astype("float32") for v in values])
    return model


def random_spec(name):
    """The spec of row `name` with `randomize`'s seeded random weights."""
    return ModelSpec(name=name, weights=None, key=f"demo-random-seed-{SEED}", seed=SEED)


def banner(models, n_images):
    return BANNER.format(models=", ".join(models), n=n_images)
