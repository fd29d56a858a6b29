"""The HRNet architectures, the published rows and their test pipelines, as data.

`ARCHS` holds one entry per architecture (timm's `cfg_cls`: branch widths, stage 1,
modules and blocks per stage); the wide ones share the layout in `STAGES`.
`PRESETS` holds the published rows, read from `presets.json`: the mmclassification
ImageNet-1k table (`family` "mmcls", measured with `TEST_PIPELINE`) and timm's other
weights (`family` "timm", each with its own pipeline). `python -m hrnet_keras.configs`
prints the `weights/manifest.json` made from it. A row's checkpoint file name and sha256
prefix come from its URL, its Keras file names from its name. No Keras import here.
"""

import dataclasses
import json
import math
import posixpath
import re
import sys
import urllib.parse
from importlib import resources


@dataclasses.dataclass(frozen=True)
class StageConfig:
    """One HRNet stage: `num_modules` HRModules over `num_branches` branches."""

    num_modules: int
    num_branches: int
    num_blocks: int  # blocks per branch
    block: str = "basic"  # "basic" (expansion 1) or "bottleneck" (expansion 4)


@dataclasses.dataclass(frozen=True)
class Layer1Config:
    """Stage 1 (`layer1`): `num_blocks` blocks on the stem's 64 channels, `channels` wide."""

    block: str  # "bottleneck" or "basic"
    num_blocks: int
    channels: int  # planes: a Bottleneck outputs 4x, a BasicBlock 1x

    @property
    def out_channels(self):
        return self.channels * BLOCK_EXPANSION[self.block]


BLOCK_EXPANSION = {"basic": 1, "bottleneck": 4}
STEM_CHANNELS = 64
NECK_CHANNELS = (128, 256, 512, 1024)  # HRFuseScales' increase_layers / timm's incre_modules
NECK_OUT_CHANNELS = 2048
HEAD_CONV_BIASES = sum(NECK_CHANNELS[1:]) + NECK_OUT_CHANNELS  # timm's / official head-conv biases
BN_EPSILON = 1e-5
IMAGENET_CLASSES = 1000  # classes of every row's head (ImageNet-1k)
BN_MOMENTUM = 0.9  # torch momentum 0.1

# The layout of the wide models (W18 ... W64): mmpretrain's and timm's `hrnet_wNN`.
LAYER1 = Layer1Config(block="bottleneck", num_blocks=4, channels=64)
LAYER1_BLOCKS = LAYER1.num_blocks
LAYER1_CHANNELS = LAYER1.out_channels  # Bottleneck output channels (mid channels: a quarter)
STAGES = (
    StageConfig(num_modules=1, num_branches=2, num_blocks=4),
    StageConfig(num_modules=4, num_branches=3, num_blocks=4),
    StageConfig(num_modules=3, num_branches=4, num_blocks=4),
)


@dataclasses.dataclass(frozen=True)
class ArchConfig:
    """One HRNet architecture: branch widths, stage 1 and stages 2-4 (timm's `cfg_cls`)."""

    name: str
    timm_name: str
    branch_channels: tuple  # stage 4's four branches; stage s uses the first s
    layer1: Layer1Config = LAYER1
    stages: tuple = STAGES

    @property
    def width(self):
        """The first branch's channels (the NN of HRNet-WNN; 16 for W18-small)."""
        return self.branch_channels[0]


def _wide(width):
    return ArchConfig(
        name=f"hrnet-w{width}",
        timm_name=f"hrnet_w{width}",
        branch_channels=tuple(width * 2**i for i in range(4)),
    )


# One row per architecture. The small ones are timm's (from the HRNet-Image-Classification
# repository's w18_small_v1 / w18_small_v2 configs): fewer blocks and modules, and W18-small
# narrower branches (16 ... 128) and a 32-plane single-Bottleneck stage 1.
ARCHS = {
    arch.name: arch
    for arch in (
        *(_wide(w) for w in (18, 30, 32, 40, 44, 48, 64)),
        ArchConfig(
            name="hrnet-w18-small",
            timm_name="hrnet_w18_small",
            branch_channels=(16, 32, 64, 128),
            layer1=Layer1Config(block="bottleneck", num_blocks=1, channels=32),
            stages=(
                StageConfig(num_modules=1, num_branches=2, num_blocks=2),
                StageConfig(num_modules=1, num_branches=3, num_blocks=2),
                StageConfig(num_modules=1, num_branches=4, num_blocks=2),
            ),
        ),
        ArchConfig(
            name="hrnet-w18-small-v2",
            timm_name="hrnet_w18_small_v2",
            branch_channels=(18, 36, 72, 144),
            layer1=Layer1Config(block="bottleneck", num_blocks=2, channels=64),
            stages=(
                StageConfig(num_modules=1, num_branches=2, num_blocks=2),
                StageConfig(num_modules=3, num_branches=3, num_blocks=2),
                StageConfig(num_modules=2, num_branches=4, num_blocks=2),
            ),
        ),
    )
}
TIMM_ARCHS = {
    **{arch.timm_name: arch for arch in ARCHS.values()},
    # timm's SSLD models: the W18 / W48 layout without head-conv biases
    "hrnet_w18_ssld": ARCHS["hrnet-w18"],
    "hrnet_w48_ssld": ARCHS["hrnet-w48"],
}
"""timm's architecture names (its `config.json` "architecture") -> `ArchConfig`."""

HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")


def hash_prefix_from_name(name):
    """The sha256 prefix carried in a file name like `...-0c10b180.pth`, or None."""
    match = HASH_IN_NAME.search(name)
    return match.group(1) if match else None


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """A row's test pipeline (mmpretrain's, in timm's `crop_pct` naming too).

    Decode to RGB; resize the short edge to `resize_short_edge` with Pillow
    (`interpolation`), the long edge to int(size * long / short); center-crop
    `crop` x `crop`; normalise 0-255 RGB with `mean` and `std`. `crop_pct` is
    timm's figure where the row comes from timm, else crop / resize_short_edge.
    """

    resize_short_edge: int
    crop: int
    interpolation: str
    mean: tuple
    std: tuple
    crop_pct: float = None

    def __post_init__(self):
        if self.crop_pct is None:
            object.__setattr__(self, "crop_pct", self.crop / self.resize_short_edge)

    @classmethod
    def from_timm(cls, img_size, crop_pct, interpolation, mean, std):
        """timm's eval transform: resize to floor(img_size / crop_pct), center-crop img_size."""
        resize = math.floor(img_size / crop_pct)
        return cls(resize, img_size, interpolation, tuple(mean), tuple(std), crop_pct)

    def describe(self):
        """E.g. `224/256 bilinear` (crop / resized short edge, interpolation)."""
        return f"{self.crop}/{self.resize_short_edge} {self.interpolation}"


@dataclasses.dataclass(frozen=True)
class Preset:
    """One published row: architecture, checkpoint URL, test pipeline and published figures.

    `family` is "mmcls" (the mmclassification table, the checkpoints' own URLs) or "timm"
    (timm's weights on the Hugging Face Hub, `hf://timm/NAME`, with timm's figures).
    `params` are the Keras model's trainable parameters (timm's count less its head-conv
    biases, `timm_params`); `flops` follow `flops_rules` at 224x224.
    """

    name: str
    arch: str
    url: str
    mmpretrain_config: str
    params: int
    flops: int
    top1: float
    top5: float
    family: str = "mmcls"
    pipeline: PipelineConfig = None
    timm_params: int = None
    timm_gmacs: float = None

    @property
    def filename(self):
        """The published checkpoint's file name (the URL's last part)."""
        return posixpath.basename(urllib.parse.urlparse(self.url).path)

    @property
    def sha256_prefix(self):
        """The sha256 prefix that the published file name carries (None for hub rows)."""
        return hash_prefix_from_name(self.filename)

    @property
    def hub_repo(self):
        """The Hugging Face Hub repository of a hub row (`hf://OWNER/NAME`), else None."""
        return self.url.removeprefix("hf://") if self.url.startswith("hf://") else None

    @property
    def keras_weights(self):
        return f"{self.name}.weights.h5"

    @property
    def keras_model(self):
        return f"{self.name}.keras"


@dataclasses.dataclass(frozen=True)
class SameWeights:
    """A timm weight that is a table row's checkpoint: its name, timm's pipeline and figures."""

    timm_name: str
    row: str
    pipeline: PipelineConfig
    top1: float
    top5: float


def _load_presets():
    text = resources.files(__package__).joinpath("presets.json").read_text()
    return json.loads(text)


def _pipeline(spec):
    return PipelineConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})


def _timm_pipeline(spec):
    norm = _DATA["test_pipeline"]
    return PipelineConfig.from_timm(**spec, mean=norm["mean"], std=norm["std"])


def _preset(row):
    pipeline = row.get("pipeline")
    pipeline = TEST_PIPELINE if pipeline is None else _timm_pipeline(pipeline)
    return Preset(**{**row, "pipeline": pipeline})


_DATA = _load_presets()
TEST_PIPELINE = _pipeline(_DATA["test_pipeline"])  # the mmclassification table's
PRESETS = {row["name"]: _preset(row) for row in _DATA["models"]}
FAMILIES = tuple(dict.fromkeys(p.family for p in PRESETS.values()))  # ("mmcls", "timm")
SAME_WEIGHTS = {
    row["timm_name"]: SameWeights(
        timm_name=row["timm_name"],
        row=row["row"],
        pipeline=_timm_pipeline({k: row[k] for k in ("img_size", "crop_pct", "interpolation")}),
        top1=row["top1"],
        top5=row["top5"],
    )
    for row in _DATA["timm"]["same_weights"]
}


def _default_rows():
    """Architecture names (ours and timm's) -> their first row, as timm's default tag."""
    defaults = {}
    for preset in PRESETS.values():
        arch = ARCHS[preset.arch]
        defaults.setdefault(arch.name, preset.name)
        defaults.setdefault(arch.timm_name, preset.name)
    return defaults


ALIASES = {
    **_default_rows(),
    **{k: v.row for k, v in SAME_WEIGHTS.items()},
}
"""Other names of rows: architecture names (`hrnet-w18-small`, timm's `hrnet_w18_small`) for
the architecture's first row, and timm's names of the table's own checkpoints
(`hrnet_w18.ms_in1k` is `hrnet-w18`)."""


def list_models(family=None):
    """Row names accepted by `create_model`: every row, or one family's ("mmcls", "timm")."""
    if family is not None and family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; known: {', '.join(FAMILIES)}.")
    return [n for n, p in PRESETS.items() if family is None or p.family == family]


def get_preset(name):
    """The `Preset` for a row name or an alias (`ALIASES`); unknown names list the rows."""
    try:
        return PRESETS[ALIASES.get(name, name)]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown HRNet model {name!r}. Known models: {', '.join(PRESETS)} "
            f"(or an architecture: {', '.join(ARCHS)})."
        ) from None


def get_arch(name):
    """The `ArchConfig` of a row name or alias (`hrnet-w18-ssld` -> `hrnet-w18`)."""
    return ARCHS[get_preset(name).arch]


def published_row(filename):
    """The row whose published checkpoint (with a sha256 prefix) is named `filename`, or None."""
    for preset in PRESETS.values():
        if preset.sha256_prefix and preset.filename == filename:
            return preset
    return None


GENERATE = "python -m hrnet_keras.configs > weights/manifest.json"


def convert_command(name, out=None):
    """The shell command that downloads and converts row `name`'s weights (into `out`)."""
    command = f"python -m hrnet_keras.convert --download {name}"
    return command if out is None else f"{command} --out {out}"


def manifest():
    """`weights/manifest.json`: the rows of `presets.json` with their derived fields."""
    derived = ("filename", "sha256_prefix", "keras_weights", "keras_model")
    rows = [
        {**dataclasses.asdict(p), **{k: getattr(p, k) for k in derived}} for p in PRESETS.values()
    ]
    pipeline = dataclasses.asdict(TEST_PIPELINE)
    return {"generated_by": GENERATE, **_DATA, "test_pipeline": pipeline, "models": rows}


def manifest_text():
    return json.dumps(manifest(), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(manifest_text())
