"""The Keras model of every row: `architecture`'s graph in `blocks.KERAS_LAYERS`.

`build` makes it with freshly initialised weights from the row's `ArchConfig`
(configs.py); `create_model` (model.py) checks its arguments first and loads weights after.
"""

import keras

from hrnet_keras import architecture, features
from hrnet_keras.blocks import KERAS_LAYERS, KerasLayers
from hrnet_keras.configs import IMAGENET_CLASSES, get_arch
from hrnet_keras.initializers import declare_keras_initializers
from hrnet_keras.keras_model import HRNetModel
from hrnet_keras.pretrained import pretrained_cfg

HEAD_DTYPE = "float32"  # KerasHub's head_dtype: the head stays float32 under a mixed policy


def _feature_maps(stem, branches, out_indices, feature_location):
    """The outputs `out_indices` (timm's numbering) at `feature_location`."""
    maps = [stem]
    for i, x in enumerate(branches):
        if feature_location == "incre" and i + 1 in out_indices:
            x = architecture.increase_layer(KERAS_LAYERS, x, i)
        maps.append(x)
    return [maps[i] for i in out_indices]


def build(
    name,
    inputs,
    *,
    include_top=True,
    pooling=None,
    classes=IMAGENET_CLASSES,
    classifier_activation="softmax",
    features_only=False,
    out_indices=None,
    feature_location="",
    head_dtype=HEAD_DTYPE,
):
    """The Keras model of row `name` on `inputs` (arguments as `create_model`'s, checked there)."""
    arch = get_arch(name)
    stem, branches = architecture.backbone(KERAS_LAYERS, inputs, arch)
    source = keras.utils.get_source_inputs(inputs)  # the Input(s) below an `input_tensor`
    source = source[0] if len(source) == 1 else source
    model_name = name.replace("-", "_").replace(".", "_")
    if features_only:
        out_indices = features.check_feature_arguments(out_indices, feature_location)
        outputs = _feature_maps(stem, branches, out_indices, feature_location)
        info = features.feature_info(arch.branch_channels, out_indices, feature_location)
        model = features.FeaturePyramidModel(
            source, outputs, name=model_name, feature_info=info, pretrained_cfg=pretrained_cfg(name)
        )
        declare_keras_initializers(model)
        return model
    x = architecture.fuse_scales(KERAS_LAYERS, branches)
    if include_top:  # pooling and classifier in `head_dtype`: float32 logits under mixed precision
        x = architecture.head(KerasLayers(dtype=head_dtype), x, classes, classifier_activation)
    elif pooling in ("avg", "max"):
        x = KERAS_LAYERS.global_pool(x, pooling, name="neck.1")
    model = HRNetModel(source, x, name=model_name, pretrained_cfg=pretrained_cfg(name))
    declare_keras_initializers(model)
    return model


def default_inputs(input_shape=None):
    """`keras.Input` for `input_shape`, default any size with 3 channels."""
    if input_shape is None:
        channels_last = keras.config.image_data_format() == "channels_last"
        input_shape = (None, None, 3) if channels_last else (3, None, None)
    return keras.Input(shape=tuple(input_shape), name="pixel_values")


def classifier(name, classifier_activation=None):
    """The full 1000-class model of row `name`: what `.weights.h5` files of the table hold."""
    return build(name, default_inputs(), classifier_activation=classifier_activation)
