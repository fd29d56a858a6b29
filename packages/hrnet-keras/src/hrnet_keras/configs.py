"""The HRNet architectures, the nine published rows and their test pipeline, as data.

`ARCHS` holds one entry per width (timm style); every width shares the stage
layout in `STAGES`. `PRESETS` holds the published rows of the mmclassification
ImageNet-1k table and `TEST_PIPELINE` the preprocessing they were measured with,
both read from `presets.json` (`python -m hrnet_keras.configs` prints the
`weights/manifest.json` made from it). A row's checkpoint file name and sha256
prefix come from its URL, its Keras file names from its name.
"""

import dataclasses
import json
import posixpath
import re
import sys
import urllib.parse
from importlib import resources


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One HRNet stage of BasicBlocks: `num_modules` HRModules over `num_branches` branches."""

    num_modules: int
    num_branches: int
    num_blocks: int  # blocks per branch


# Stage 1 is `layer1`: LAYER1_BLOCKS Bottlenecks, 64 -> 256 channels. Stages 2-4 are HRModules.
LAYER1_BLOCKS = 4
STAGES = (
    StageConfig(num_modules=1, num_branches=2, num_blocks=4),
    StageConfig(num_modules=4, num_branches=3, num_blocks=4),
    StageConfig(num_modules=3, num_branches=4, num_blocks=4),
)
STEM_CHANNELS = 64
LAYER1_CHANNELS = 256  # Bottleneck output channels (mid channels: a quarter)
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

HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def hash_prefix_from_name(name):
    """The sha256 prefix carried in a file name like `...-0c10b180.pth`, or None."""
    match = HASH_IN_NAME.search(name)
    return match.group(1) if match else None


@dataclasses.dataclass(frozen=True)
class Preset:
    """One published row: architecture, checkpoint URL and the table's figures."""

    name: str
    arch: str
    url: str
    mmpretrain_config: str
    params: int
    flops: int
    top1: float
    top5: float

    @property
    def filename(self):
        """The published checkpoint's file name (the URL's last part)."""
        return posixpath.basename(urllib.parse.urlparse(self.url).path)

    @property
    def sha256_prefix(self):
        """The sha256 prefix that the published file name carries."""
        return hash_prefix_from_name(self.filename)

    @property
    def keras_weights(self):
        return f"{self.name}.weights.h5"

    @property
    def keras_model(self):
        return f"{self.name}.keras"


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """The table's test pipeline (mmpretrain's, timm's `crop_pct` naming).

    Decode to RGB; resize the short edge to `resize_short_edge` with Pillow
    (`interpolation`), the long edge to int(size * long / short); center-crop
    `crop` x `crop`; normalise 0-255 RGB with `mean` and `std`.
    """

    resize_short_edge: int
    crop: int
    interpolation: str
    mean: tuple
    std: tuple

    @property
    def crop_pct(self):
        return self.crop / self.resize_short_edge


def _load_presets():
    text = resources.files(__package__).joinpath("presets.json").read_text()
    return json.loads(text)


_DATA = _load_presets()
PRESETS = {row["name"]: Preset(**row) for row in _DATA["models"]}
TEST_PIPELINE = PipelineConfig(
    **{k: tuple(v) if isinstance(v, list) else v for k, v in _DATA["test_pipeline"].items()}
)


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


def published_row(filename):
    """The row whose published checkpoint is named `filename`, or None."""
    for preset in PRESETS.values():
        if preset.filename == filename:
            return preset
    return None


GENERATE = "python -m hrnet_keras.configs > weights/manifest.json"


def manifest():
    """`weights/manifest.json`: the rows of `presets.json` with their derived fields."""
    derived = ("filename", "sha256_prefix", "keras_weights", "keras_model")
    rows = [
        {**dataclasses.asdict(p), **{k: getattr(p, k) for k in derived}} for p in PRESETS.values()
    ]
    pipeline = {**_DATA["test_pipeline"], "crop_pct": TEST_PIPELINE.crop_pct}
    return {"generated_by": GENERATE, **_DATA, "test_pipeline": pipeline, "models": rows}


def manifest_text():
    return json.dumps(manifest(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manifest_text())
