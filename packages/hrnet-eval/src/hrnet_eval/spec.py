"""`ModelSpec`: what a worker loads for one row of the table."""

import dataclasses

from hrnet_keras.configs import Preset, get_preset


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A row, its `.weights.h5` (None: seeded random init) and the weights' identity.

    `published` says whether the weights were converted from the row's published
    checkpoint (sha256 checked); `source_sha256` is the sha256 of the checkpoint
    they were converted from, when the `.weights.h5` records it. `preset` is the
    row's `hrnet_keras.configs.Preset`, looked up from `name` once.
    """

    name: str
    weights: str | None
    key: str  # identity of the weights, recorded with every shard
    seed: int = 0  # of Keras' initialisers, when `weights` is None
    source_sha256: str | None = None
    published: bool = False
    preset: Preset = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self):
        if self.preset is None:
            object.__setattr__(self, "preset", get_preset(self.name))


def label(name):
    """A row's name as the result files show it: hrnet-w18-ssld -> HRNet-W18 (ssld), as in
    the mmclassification table; timm's rows keep timm's names."""
    if get_preset(name).family != "mmcls":
        return name
    parts = name.split("-")
    return f"HRNet-{parts[1].upper()}" + (f" ({'-'.join(parts[2:])})" if len(parts) > 2 else "")
