"""`create_model` and the keras.applications constructors `HRNetW18` ... `HRNetW64`.

As keras.applications does: check the arguments, build the model, then load
the weights into the model just built (`hrnet_keras.loading`).
"""

import keras

from hrnet_keras import features, loading, network, pretrained
from hrnet_keras.configs import IMAGENET_CLASSES, get_preset

STRIDE = 32  # the smallest branch is 1/32 of the input; sizes must divide by it


def _check_arguments(
    name,
    weights,
    include_top,
    input_shape,
    input_tensor,
    pooling,
    classes,
    features_only,
    out_indices,
    feature_location,
):
    get_preset(name)
    loading.check_weights_argument(weights, name)
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', got {pooling!r}.")
    if features_only:
        if include_top:
            raise ValueError(
                "features_only=True returns feature maps and has no head; include_top=True "
                "conflicts with it (leave include_top out, or set features_only=False)."
            )
        if pooling is not None:
            raise ValueError("features_only=True returns feature maps; pooling must be None.")
        features.check_feature_arguments(out_indices, feature_location)
    elif out_indices is not None or feature_location:
        raise ValueError("out_indices and feature_location need features_only=True.")
    if include_top and not features_only:
        if not isinstance(classes, int) or classes < 1:
            raise ValueError(f"classes must be a positive integer, got {classes!r}.")
        pretrained = weights == "imagenet" or loading.is_named_weights(weights)
        if pretrained and classes != IMAGENET_CLASSES:
            raise ValueError(
                f"weights={weights!r} with include_top=True needs classes={IMAGENET_CLASSES}, got "
                f"{classes}; use include_top=False for another head."
            )
    if input_tensor is not None and not keras.backend.is_keras_tensor(input_tensor):
        raise ValueError(
            f"input_tensor must be a Keras tensor (e.g. keras.Input(...)), "
            f"got {type(input_tensor).__name__}."
        )
    shape = input_shape if input_tensor is None else tuple(input_tensor.shape)[1:]
    if shape is None:
        return
    shape = tuple(shape)
    what = "input_shape" if input_tensor is None else "input_tensor's shape"
    data_format = keras.config.image_data_format()
    channels = 2 if data_format == "channels_last" else 0
    if len(shape) != 3 or shape[channels] != 3:
        raise ValueError(f"{what} must be 3 dims with 3 channels ({data_format}), got {shape}.")
    spatial = [d for i, d in enumerate(shape) if i != channels]
    if any(d is not None and (d < STRIDE or d % STRIDE) for d in spatial):
        raise ValueError(
            f"{what} {shape}: height and width must be multiples of {STRIDE} (or None)."
        )


def create_model(
    name,
    *,
    weights=None,
    include_top=None,
    input_shape=None,
    input_tensor=None,
    pooling=None,
    classes=IMAGENET_CLASSES,
    classifier_activation="softmax",
    features_only=False,
    out_indices=None,
    feature_location="",
    head_dtype=network.HEAD_DTYPE,
):
    """Build a Keras HRNet for one row (see `list_models()`) or architecture.

    Args:
        name: a row name such as `"hrnet-w18"`, `"hrnet-w48-ssld"` or timm's
            `"hrnet_w18_small.gluon_in1k"`; an architecture name (`"hrnet-w18-small"`,
            timm's `"hrnet_w18_small"`) stands for its first row.
        weights: `None` (random init), `"imagenet"` (the row's published
            checkpoint), another row name of the same architecture, a Hugging Face
            Hub checkpoint `"hf://timm/hrnet_w18.ms_aug_in1k"` (optionally
            `@revision`), or a path to a `.weights.h5`, `.keras`, `.pth` or
            `.safetensors` file.
        include_top: keep the 2048 -> `classes` Linear head (default: True, unless
            `features_only`, which has no head; passing True with it is an error).
        input_shape: e.g. `(224, 224, 3)`; default: any size divisible by 32.
        input_tensor: optional Keras tensor to use as the model's input.
        pooling: without the top, `None` (the 2048-channel map), `"avg"` or `"max"`.
        classes: number of classes of the head (1000 with pretrained weights).
        classifier_activation: activation of the head; `None` returns logits.
        features_only: return feature maps (a `FeaturePyramidModel` with
            `feature_info` and `pyramid_outputs`); by default the four branches.
        out_indices: with `features_only`, which maps in timm's numbering: 0 the
            stem (reduction 2), 1-4 the branches (reductions 4-32); default (1, 2, 3, 4).
        feature_location: with `features_only`, `""` (the last stage's branches) or
            `"incre"` (through the head's incre modules, 128-1024 channels, timm's default).
        head_dtype: dtype (policy) of the pooling and classifier (KerasHub's argument):
            float32 by default, so a `mixed_bfloat16` / `mixed_float16` global policy
            runs the backbone in half precision and returns float32 probabilities.
    """
    if include_top is None:
        include_top = not features_only
    _check_arguments(
        name,
        weights,
        include_top,
        input_shape,
        input_tensor,
        pooling,
        classes,
        features_only,
        out_indices,
        feature_location,
    )
    inputs = network.default_inputs(input_shape) if input_tensor is None else input_tensor
    model = network.build(
        name,
        inputs,
        include_top=include_top,
        pooling=pooling,
        classes=classes,
        classifier_activation=classifier_activation,
        features_only=features_only,
        out_indices=out_indices,
        feature_location=feature_location,
        head_dtype=head_dtype,
    )
    if weights is not None:
        loading.load_weights(model, weights, name)
        row = pretrained.weights_row(weights)
        if row is not None:  # another row's weights: its test pipeline
            model.pretrained_cfg = pretrained.pretrained_cfg(row)
    return model


def _constructor(arch_name, title):
    def constructor(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=IMAGENET_CLASSES,
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

    constructor.__name__ = constructor.__qualname__ = title
    constructor.__doc__ = (
        f"Instantiate {title} (keras.applications style); see `create_model`. "
        f'`weights="imagenet"` loads the `{get_preset(arch_name).name}` row.'
    )
    return constructor


HRNetW18 = _constructor("hrnet-w18", "HRNetW18")
HRNetW30 = _constructor("hrnet-w30", "HRNetW30")
HRNetW32 = _constructor("hrnet-w32", "HRNetW32")
HRNetW40 = _constructor("hrnet-w40", "HRNetW40")
HRNetW44 = _constructor("hrnet-w44", "HRNetW44")
HRNetW48 = _constructor("hrnet-w48", "HRNetW48")
HRNetW64 = _constructor("hrnet-w64", "HRNetW64")
HRNetW18Small = _constructor("hrnet-w18-small", "HRNetW18Small")
HRNetW18SmallV2 = _constructor("hrnet-w18-small-v2", "HRNetW18SmallV2")
