"""The HRNet architectures and the nine published rows, as data.

`ARCHS` holds one entry per width (timm style); every width shares the stage
layout in `STAGES`. `PRESETS` holds the published rows of the mmclassification
ImageNet-1k table (read from `presets.json`, also `weights/manifest.json`).
"""

import dataclasses
import json
from importlib import resources


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One HRNet stage: `num_modules` HRModules over `num_branches` branches."""

    num_modules: int
    num_branches: int
    block: str  # "bottleneck" or "basic"
    num_blocks: int  # blocks per branch


# Stage 1 is `layer1` (4 Bottlenecks, 64 -> 256); stages 2-4 are HRModules.
STAGES = (
    StageConfig(num_modules=1, num_branches=1, block="bottleneck", num_blocks=4),
    StageConfig(num_modules=1, num_branches=2, block="basic", num_blocks=4),
    StageConfig(num_modules=4, num_branches=3, block="basic", num_blocks=4),
    StageConfig(num_modules=3, num_branches=4, block="basic", num_blocks=4),
)
STEM_CHANNELS = 64
LAYER1_CHANNELS = 64  # Bottleneck mid channels; output 4x
NECK_CHANNELS = (128, 256, 512, 1024)  # HRFuseScales' increase_layers outputs
NECK_OUT_CHANNELS = 2048
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9  # torch momentum 0.1


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """One HRNet width: branch channels are width * (1, 2, 4, 8)."""

    name: str
    width: int

    @property
    def branch_channels(self):
        return tuple(self.width * 2**i for i in range(4))


ARCHS = {
    f"hrnet-w{w}": ArchConfig(name=f"hrnet-w{w}", width=w) for w in (18, 30, 32, 40, 44, 48, 64)
}


@dataclasses.dataclass(frozen=True)
class Preset:
    """One published row: architecture, checkpoint and the table's figures."""

    name: str
    arch: str
    width: int
    url: str
    filename: str
    sha256_prefix: str
    mmpretrain_config: str
    params: int
    flops: int
    top1: float
    top5: float
    keras_weights: str
    keras_model: str


def _load_manifest():
    text = resources.files(__package__).joinpath("presets.json").read_text()
    return json.loads(text)


MANIFEST = _load_manifest()
PRESETS = {row["name"]: Preset(**row) for row in MANIFEST["models"]}
TEST_PIPELINE = MANIFEST["test_pipeline"]


def list_models():
    """Names accepted by `create_model`: the nine published rows."""
    return list(PRESETS)


def get_preset(name):
    """The `Preset` for `name`; unknown names fail listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"Unknown HRNet model {name!r}. Known models: {', '.join(PRESETS)}."
        ) from None


def get_arch(name):
    """The `ArchConfig` of a row name (`hrnet-w18-ssld` -> `hrnet-w18`)."""
    return ARCHS[get_preset(name).arch]
