"""Test-wide setup shared by every package.

torchvision pulls in Triton, whose LLVM clashes with TensorFlow's when Triton
loads second (a segfault in `import triton`). Tests that use the reference
model with the TensorFlow backend need both, so load the torch stack first.
"""

try:
    import torchvision  # noqa: F401
except ImportError:  # a run without torch: nothing to order
    pass

import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import pytest  # noqa: E402

# JAX compiles each model once per process; a shared on-disk cache lets the
# next test process (and the next run) reuse those programs.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "hrnet-jax-cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

# tests/reference_model.py is importable as `reference_model` (Pants: a source root).
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests"))

RUN_SLOW = os.environ.get("HRNET_RUN_SLOW") == "1"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: the widest models; run when HRNET_RUN_SLOW=1 (CI sets it)"
    )


def pytest_collection_modifyitems(config, items):
    if RUN_SLOW:
        return
    skip = pytest.mark.skip(reason="slow: set HRNET_RUN_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# Reference checkpoints (mmpretrain, random weights): made once per test session; the files
# and logits once per machine (tests/fixture_cache.py), whichever test process comes first.

W18_SEED = 3


@pytest.fixture(scope="session")
def reference_w18():
    import reference_model

    return reference_model.randomize(reference_model.build_reference("hrnet-w18"), seed=W18_SEED)


def _images():
    import numpy as np

    return np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")


def _build_w18_files(folder):
    import numpy as np
    import reference_model

    model = reference_model.randomize(reference_model.build_reference("hrnet-w18"), W18_SEED)
    reference_model.save_mmcls(model, folder / "w18_mmcls.pth")
    reference_model.save_official(model, folder / "w18_official.pth")
    np.save(folder / "logits.npy", reference_model.reference_logits(model, _images()))


@pytest.fixture(scope="session")
def w18_reference_dir():
    import fixture_cache

    from hrnet_keras.configs import get_preset

    # (not all of hrnet_keras: a Pants sandbox holds only the modules its tests import)
    config = get_preset("hrnet-w18").mmpretrain_config
    key = {"row": "hrnet-w18", "config": config, "seed": W18_SEED, "images": [0, 2, 224]}
    return fixture_cache.cached_dir(
        "w18-reference", _build_w18_files, key=key, modules=("reference_model",)
    )


@pytest.fixture(scope="session")
def w18_files(w18_reference_dir):
    """The W18 reference saved as published (mmcls) and as official/timm with head biases."""
    return {
        "mmcls": w18_reference_dir / "w18_mmcls.pth",
        "official": w18_reference_dir / "w18_official.pth",
    }


@pytest.fixture(scope="session")
def images():
    return _images()


@pytest.fixture(scope="session")
def reference_w18_logits(w18_reference_dir):
    """The W18 reference's logits on `images`."""
    import numpy as np

    return np.load(w18_reference_dir / "logits.npy")
