"""One HRNet builder for every width: mmpretrain's HRNet + HRFuseScales + GAP + Linear."""

import keras
from keras import layers

from hrnet_keras import blocks
from hrnet_keras.initializers import NUMPY_DENSE_INIT, declare_keras_initializers
from hrnet_keras.configs import (
    LAYER1_CHANNELS,
    NECK_CHANNELS,
    NECK_OUT_CHANNELS,
    STAGES,
    STEM_CHANNELS,
    get_arch,
    get_preset,
)


def _input_shape(input_shape):
    if input_shape is not None:
        return tuple(input_shape)
    if keras.config.image_data_format() == "channels_last":
        return (None, None, 3)
    return (3, None, None)


def hrnet_backbone(inputs, branch_channels):
    """Stem, layer1 and stages 2-4; returns the four branch outputs."""
    x = blocks.conv_bn(
        inputs, STEM_CHANNELS, 3, strides=2, conv="backbone.conv1", bn="backbone.bn1"
    )
    x = blocks.conv_bn(x, STEM_CHANNELS, 3, strides=2, conv="backbone.conv2", bn="backbone.bn2")
    layer1 = STAGES[0]
    block, expansion = blocks.BLOCKS[layer1.block]
    for k in range(layer1.num_blocks):
        x = block(x, LAYER1_CHANNELS * expansion, f"backbone.layer1.{k}")
    features = [x]
    for s, stage in enumerate(STAGES[1:], start=2):
        channels = branch_channels[: stage.num_branches]
        features = blocks.transition(features, channels, f"backbone.transition{s - 1}")
        for m in range(stage.num_modules):
            features = blocks.hr_module(
                features, channels, stage.num_blocks, f"backbone.stage{s}.{m}"
            )
    return features


def create_model(
    name,
    *,
    weights=None,
    include_top=True,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    features_only=False,
):
    """Build a Keras HRNet for one row of the table (see `list_models()`).

    Args:
        name: a row name such as `"hrnet-w18"` or `"hrnet-w48-ssld"`.
        weights: `None` (random init), `"imagenet"` (the row's published
            checkpoint), another row name, or a path to a `.weights.h5`,
            `.keras`, `.pth` or `.safetensors` file.
        include_top: keep the 2048 -> `classes` Linear head.
        input_shape: e.g. `(224, 224, 3)`; default: any size divisible by 32.
        input_tensor: optional Keras tensor to use as the model's input.
        pooling: without the top, `None` (the 2048-channel map), `"avg"` or `"max"`.
        classes: number of classes of the head.
        classifier_activation: activation of the head; `None` returns logits.
        features_only: return the four multi-resolution branch outputs.
    """
    preset = get_preset(name)
    arch = get_arch(name)
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}.")
    if input_tensor is None:
        inputs = keras.Input(shape=_input_shape(input_shape), name="pixel_values")
    else:
        inputs = input_tensor
    features = hrnet_backbone(inputs, arch.branch_channels)
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
    model = keras.Model(inputs, outputs, name=preset.name.replace("-", "_"))
    declare_keras_initializers(model)
    if weights is not None:
        from hrnet_keras.checkpoints import load_weights_into

        load_weights_into(model, weights, name)
    return model


def _constructor(arch_name):
    def constructor(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=1000,
        classifier_activation="softmax",
    ):
        return create_model(
            arch_name,
            weights=weights,
            include_top=include_top,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
        )

    title = arch_name.replace("hrnet-w", "HRNetW")
    constructor.__name__ = constructor.__qualname__ = title
    constructor.__doc__ = (
        f"Instantiate {title} (keras.applications style); see `create_model`. "
        f'`weights="imagenet"` loads the `{arch_name}` row of the table.'
    )
    return constructor


HRNetW18 = _constructor("hrnet-w18")
HRNetW30 = _constructor("hrnet-w30")
HRNetW32 = _constructor("hrnet-w32")
HRNetW40 = _constructor("hrnet-w40")
HRNetW44 = _constructor("hrnet-w44")
HRNetW48 = _constructor("hrnet-w48")
HRNetW64 = _constructor("hrnet-w64")
