"""Reference checkpoints made once per test session (mmpretrain, random weights)."""

import numpy as np
import pytest
import reference_model


@pytest.fixture(scope="session")
def reference_w18():
    return reference_model.randomize(reference_model.build_reference("hrnet-w18"), seed=3)


@pytest.fixture(scope="session")
def w18_files(reference_w18, tmp_path_factory):
    """The W18 reference saved as published (mmcls) and as official/timm with head biases."""
    root = tmp_path_factory.mktemp("w18")
    return {
        "mmcls": reference_model.save_mmcls(reference_w18, root / "w18_mmcls.pth"),
        "official": reference_model.save_official(reference_w18, root / "w18_official.pth"),
    }


@pytest.fixture(scope="session")
def images():
    return np.random.default_rng(0).standard_normal((2, 224, 224, 3)).astype("float32")


@pytest.fixture(scope="session")
def reference_w18_logits(reference_w18, images):
    return reference_model.reference_logits(reference_w18, images)
