"""Feature pyramids: which maps `features_only=True` returns, and the model that says so.

Outputs are numbered as timm numbers them: 0 is the stem (after the first stride-2 conv,
64 channels, reduction 2), 1-4 the four branches at reductions 4-32, taken either from
the last stage (`feature_location=""`) or through the head's channel-increasing
Bottlenecks (`feature_location="incre"`, timm's default: 128 ... 1024 channels).
`FeaturePyramidModel` keeps that description (`feature_info`) in its Keras config, so
it survives `keras.models.load_model` (with `hrnet_keras.features` imported, which
registers the class), and offers KerasHub's `pyramid_outputs` ({"P1": ..., "P5": ...}).
"""

import keras

from hrnet_keras.configs import NECK_CHANNELS, STEM_CHANNELS
from hrnet_keras.keras_model import HRNetModel

FEATURE_LOCATIONS = ("", "incre")  # timm's names: the raw branches, or the incre modules
DEFAULT_OUT_INDICES = (1, 2, 3, 4)  # the four branches (timm's default adds 0, the stem)
NUM_FEATURES = 5
TIMM_MODULES = ("stem", "stage1", "stage2", "stage3", "stage4")  # timm's feature_info names


class FeatureInfo(list):
    """A list of {"index", "num_chs", "reduction", "module", "name"}, one per output.

    As timm's `FeatureInfo`: `channels()`, `reduction()` and `module_name()` list one
    field over the outputs; `name` is the KerasHub pyramid level `P<log2 reduction>`.
    """

    def channels(self):
        return [f["num_chs"] for f in self]

    def reduction(self):
        return [f["reduction"] for f in self]

    def module_name(self):
        return [f["module"] for f in self]


def check_feature_arguments(out_indices, feature_location):
    """The out_indices as a tuple; fails in one line on values timm would not take."""
    if feature_location not in FEATURE_LOCATIONS:
        raise ValueError(
            f"feature_location must be '' (the branches) or 'incre' (the head's incre "
            f"modules), got {feature_location!r}."
        )
    if out_indices is None:
        return DEFAULT_OUT_INDICES
    indices = tuple(out_indices) if not isinstance(out_indices, int) else (out_indices,)
    bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < NUM_FEATURES]
    if bad or not indices or len(set(indices)) != len(indices):
        raise ValueError(
            f"out_indices must be distinct integers in 0..{NUM_FEATURES - 1} (0 = the stem, "
            f"1-4 = the branches at reductions 4-32), got {out_indices!r}."
        )
    return tuple(sorted(indices))


def feature_info(branch_channels, out_indices, feature_location):
    """The `FeatureInfo` of the outputs `out_indices` (sorted) at `feature_location`."""
    branches = NECK_CHANNELS if feature_location == "incre" else branch_channels
    channels = (STEM_CHANNELS, *branches)
    return FeatureInfo(
        {
            "index": i,
            "num_chs": int(channels[i]),
            "reduction": 2 ** (i + 1),
            "module": TIMM_MODULES[i],
            "name": f"P{i + 1}",
        }
        for i in out_indices
    )


@keras.saving.register_keras_serializable(package="hrnet_keras")
class FeaturePyramidModel(HRNetModel):
    """A functional model whose outputs are feature maps described by `feature_info`."""

    # (*args, **kwargs): Keras serialises and revives it as a functional model, passing the
    # config's extra key (feature_info) back here.
    def __init__(self, *args, feature_info=None, **kwargs):
        super().__init__(*args, **kwargs)
        info = FeatureInfo(dict(f) for f in feature_info or ())
        if len(info) != len(self.outputs):
            raise ValueError(
                f"feature_info describes {len(info)} outputs, the model has {len(self.outputs)}."
            )
        object.__setattr__(self, "_feature_info", info)  # not through Keras' list tracking

    @property
    def feature_info(self):
        """The `FeatureInfo` of the outputs, in their order."""
        return self._feature_info

    @property
    def pyramid_outputs(self):
        """KerasHub's mapping of pyramid level to output: {"P2": tensor, ...}."""
        return {f["name"]: out for f, out in zip(self.feature_info, self.outputs)}

    def get_config(self):
        return {**super().get_config(), "feature_info": [dict(f) for f in self.feature_info]}
