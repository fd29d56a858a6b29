"""`HRNetBackbone`: hrnet_keras' HRNet as a KerasHub `FeaturePyramidBackbone`.

The graph is hrnet_keras' own (`create_model(..., features_only=True)` for the stem and
the four branches, `architecture.fuse_scales` for the HRFuseScales neck), so weights
converted by hrnet_keras load into it layer by layer.
"""

import keras
from keras_hub.models import FeaturePyramidBackbone  # pants: no-infer-dep

from hrnet_keras import architecture as graph
from hrnet_keras.blocks import KERAS_LAYERS
from hrnet_keras.configs import get_arch
from hrnet_keras.initializers import declare_keras_initializers
from hrnet_keras.kerashub.weights import copy_weights
from hrnet_keras.model import create_model

PYRAMID_INDICES = (0, 1, 2, 3, 4)  # timm's numbering: the stem, then the four branches


@keras.saving.register_keras_serializable(package="hrnet_keras")
class HRNetBackbone(FeaturePyramidBackbone):
    """HRNet's stem, four stages and HRFuseScales neck: a 2048-channel map at 1/32 of the input.

    `pyramid_outputs`: "P1" the stem (1/2, 64 channels), "P2" ... "P5" the last stage's four
    branches (1/4 ... 1/32; 18 ... 144 channels for W18).

    Args:
        architecture: an hrnet_keras architecture or row (`hrnet_keras.list_models()`), e.g.
            `"hrnet-w18"`; kept as the architecture's name.
        image_shape: input shape without the batch; default any size (multiples of 32) with
            3 channels in `keras.config.image_data_format()`.
        dtype: the model's dtype policy (KerasHub's argument); its layers follow the global
            policy when they are built, as hrnet_keras' models do.
    """

    def __init__(self, architecture="hrnet-w18", image_shape=None, dtype=None, **kwargs):
        arch = get_arch(architecture)
        pyramid = create_model(
            arch.name, input_shape=image_shape, features_only=True, out_indices=PYRAMID_INDICES
        )
        neck = graph.fuse_scales(KERAS_LAYERS, pyramid.outputs[1:])
        super().__init__(inputs=pyramid.input, outputs=neck, dtype=dtype, **kwargs)
        declare_keras_initializers(self)

        self.pyramid_outputs = pyramid.pyramid_outputs
        self.architecture = arch.name
        self.image_shape = None if image_shape is None else tuple(image_shape)
        self.data_format = keras.config.image_data_format()

    def get_config(self):
        config = super().get_config()
        config.update({"architecture": self.architecture, "image_shape": self.image_shape})
        return config

    @classmethod
    def from_row(cls, name, *, weights=None, image_shape=None, **kwargs):
        """The backbone of row `name`, with `weights` as `hrnet_keras.create_model` takes
        them (`"imagenet"`, a row name, `"hf://timm/..."`, a `.weights.h5`, `.keras`, `.pth`
        or `.safetensors` file)."""
        backbone = cls(name, image_shape=image_shape, **kwargs)
        if weights is not None:
            copy_weights(create_model(name, weights=weights, include_top=False), backbone)
        return backbone
