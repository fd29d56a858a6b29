"""`--demo`: scikit-image's bundled photos in class folders, and seeded random weights."""

import shutil
from pathlib import Path

from hrnet_keras.files import atomic_write

from hrnet_eval.spec import ModelSpec
from hrnet_eval.errors import EvalError

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
    "=" * 78 + "\nDEMO: {models} with SEEDED RANDOM WEIGHTS on {n} photos from scikit-image.\n"
    "These accuracies MEAN NOTHING; this run only shows the machinery working.\n"
    "Evaluate for real with --data <ImageNet val> (see --help).\n" + "=" * 78
)


class DemoError(EvalError, RuntimeError):
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
            raise DemoError(
                f"scikit-image's sample photo {photo} is missing; reinstall scikit-image."
            )
        target = dest / wnid / name
        if not target.is_file():
            with atomic_write(target) as tmp:
                shutil.copyfile(photo, tmp)
    return dest


def random_spec(name):
    """The spec of row `name` with Keras' initialisers, seeded: the same weights on every worker."""
    return ModelSpec(name=name, weights=None, key=f"keras-init-seed-{SEED}", seed=SEED)


def banner(models, n_images):
    return BANNER.format(models=", ".join(models), n=n_images)
