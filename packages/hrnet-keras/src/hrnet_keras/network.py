"""The HRNet graph for every architecture: mmpretrain's HRNet + HRFuseScales + GAP + Linear.

`build` makes the Keras model with freshly initialised weights from the row's
`ArchConfig` (configs.py); `create_model` (model.py) checks its arguments first and
loads weights after.
"""

import keras
from keras import layers

from hrnet_keras import blocks, features
from hrnet_keras.keras_model import HRNetModel
from hrnet_keras.configs import (
    BLOCK_EXPANSION,
    IMAGENET_CLASSES,
    NECK_CHANNELS,
    NECK_OUT_CHANNELS,
    STEM_CHANNELS,
    get_arch,
)
from hrnet_keras.initializers import NUMPY_DENSE_INIT, declare_keras_initializers
from hrnet_keras.pretrained import pretrained_cfg

HEAD_DTYPE = "float32"  # KerasHub's head_dtype: the head stays float32 under a mixed policy


def hrnet_backbone(inputs, arch):
    """Stem, layer1 and stages 2-4 of `arch` (an `ArchConfig`); returns (stem, branches).

    `stem` is the first conv's output (stride 2, timm's feature 0); `branches` the last
    stage's four outputs.
    """
    stem = blocks.conv_bn(
        inputs, STEM_CHANNELS, 3, strides=2, conv="backbone.conv1", bn="backbone.bn1"
    )
    x = blocks.conv_bn(stem, STEM_CHANNELS, 3, strides=2, conv="backbone.conv2", bn="backbone.bn2")
    layer1 = arch.layer1
    make_block = blocks.residual_block(layer1.block)
    for k in range(layer1.num_blocks):
        x = make_block(x, layer1.out_channels, f"backbone.layer1.{k}")
    branches = [x]
    for s, stage in enumerate(arch.stages, start=2):
        expansion = BLOCK_EXPANSION[stage.block]
        channels = [c * expansion for c in arch.branch_channels[: stage.num_branches]]
        branches = blocks.transition(branches, channels, f"backbone.transition{s - 1}")
        for m in range(stage.num_modules):
            branches = blocks.hr_module(
                branches, channels, stage.num_blocks, f"backbone.stage{s}.{m}", stage.block
            )
    return stem, branches


def _feature_maps(stem, branches, out_indices, feature_location):
    """The outputs `out_indices` (timm's numbering) at `feature_location`."""
    maps = [stem]
    for i, x in enumerate(branches):
        if feature_location == "incre" and i + 1 in out_indices:
            x = blocks.increase_layer(x, i, NECK_CHANNELS[i], "neck.0")
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
    stem, branches = hrnet_backbone(inputs, arch)
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
    x = blocks.fuse_scales(branches, NECK_CHANNELS, NECK_OUT_CHANNELS, "neck.0")
    if include_top:  # pooling and classifier in `head_dtype`: float32 logits under mixed precision
        x = layers.GlobalAveragePooling2D(name=blocks.layer_name("neck.1"), dtype=head_dtype)(x)
        x = layers.Dense(
            classes,
            activation=classifier_activation,
            kernel_initializer=NUMPY_DENSE_INIT,
            name=blocks.layer_name("head.fc"),
            dtype=head_dtype,
        )(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name=blocks.layer_name("neck.1"))(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name=blocks.layer_name("neck.1"))(x)
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
