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


# Reference checkpoints, made once per test session (mmpretrain, random weights).


@pytest.fixture(scope="session")
def reference_w18():
    import reference_model

    return reference_model.randomize(reference_model.build_reference("hrnet-w18"), seed=3)


@pytest.fixture(scope="session")
def w18_files(reference_w18, tmp_path_factory):
    """The W18 reference saved as published (mmcls) and as official/timm with head biases."""
    import reference_model

    root = tmp_path_factory.mktemp("w18")
    return {
        "mmcls": reference_model.save_mmcls(reference_w18, root / "w18_mmcls.pth"),
        "official": reference_model.save_official(reference_w18, root / "w18_official.pth"),
    }


@pytest.fixture(scope="session")
def images():
    import numpy as np

    return np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")


@pytest.fixture(scope="session")
def reference_w18_logits(reference_w18, images):
    import reference_model

    return reference_model.reference_logits(reference_w18, images)
