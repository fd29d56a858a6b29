"""The HRNet graph for every width: mmpretrain's HRNet + HRFuseScales + GAP + Linear.

`build` makes the Keras model with freshly initialised weights; `create_model`
(model.py) checks its arguments first and loads weights after.
"""

import keras
from keras import layers

from hrnet_keras import blocks
from hrnet_keras.configs import (
    LAYER1_BLOCKS,
    LAYER1_CHANNELS,
    NECK_CHANNELS,
    NECK_OUT_CHANNELS,
    STAGES,
    STEM_CHANNELS,
    get_arch,
)
from hrnet_keras.initializers import NUMPY_DENSE_INIT, declare_keras_initializers


def hrnet_backbone(inputs, branch_channels):
    """Stem, layer1 and stages 2-4; returns the four branch outputs."""
    x = blocks.conv_bn(
        inputs, STEM_CHANNELS, 3, strides=2, conv="backbone.conv1", bn="backbone.bn1"
    )
    x = blocks.conv_bn(x, STEM_CHANNELS, 3, strides=2, conv="backbone.conv2", bn="backbone.bn2")
    for k in range(LAYER1_BLOCKS):
        x = blocks.bottleneck_block(x, LAYER1_CHANNELS, f"backbone.layer1.{k}")
    features = [x]
    for s, stage in enumerate(STAGES, start=2):
        channels = branch_channels[: stage.num_branches]
        features = blocks.transition(features, channels, f"backbone.transition{s - 1}")
        for m in range(stage.num_modules):
            features = blocks.hr_module(
                features, channels, stage.num_blocks, f"backbone.stage{s}.{m}"
            )
    return features


def build(
    name,
    inputs,
    *,
    include_top=True,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    features_only=False,
):
    """The Keras model of row `name` on `inputs` (arguments as `create_model`'s, checked there)."""
    features = hrnet_backbone(inputs, get_arch(name).branch_channels)
    if features_only:
        outputs = features
    else:
        x = blocks.fuse_scales(features, NECK_CHANNELS, NECK_OUT_CHANNELS, "neck.0")
        if include_top:
            x = layers.GlobalAveragePooling2D(name=blocks.layer_name("neck.1"))(x)
            x = layers.Dense(
                classes,
                activation=classifier_activation,
                kernel_initializer=NUMPY_DENSE_INIT,
                name=blocks.layer_name("head.fc"),
            )(x)
        elif pooling == "avg":
            x = layers.GlobalAveragePooling2D(name=blocks.layer_name("neck.1"))(x)
        elif pooling == "max":
            x = layers.GlobalMaxPooling2D(name=blocks.layer_name("neck.1"))(x)
        outputs = x
    source = keras.utils.get_source_inputs(inputs)  # the Input(s) below an `input_tensor`
    source = source[0] if len(source) == 1 else source
    model = keras.Model(source, outputs, name=name.replace("-", "_"))
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
