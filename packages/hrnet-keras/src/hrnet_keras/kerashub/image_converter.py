"""`HRNetImageConverter`: a row's test pipeline as a KerasHub image converter.

Resize the short edge to `resize_short_edge` (the long edge to
floor(resize_short_edge * long / short), mmpretrain's `ResizeEdge`), crop the center
`image_size` at round((H - h) / 2) (mmpretrain's and timm's `CenterCrop`), then normalise
with the row's mean and std (`scale` = 1 / std, `offset` = -mean / std, on 0-255 pixels).
"""

import keras
import numpy as np
from keras import backend
from keras_hub.layers import ImageConverter  # pants: no-infer-dep

from hrnet_keras.kerashub.backbone import HRNetBackbone
from hrnet_keras.pretrained import pipeline_of


@keras.saving.register_keras_serializable(package="hrnet_keras")
class ResizeAndCenterCrop(keras.layers.Resizing):
    """`keras.layers.Resizing` that keeps the aspect ratio: the short edge to `size`, then
    the center `height` x `width`. Integer images come back rounded and saturated, as
    Pillow's resize gives them. Images only (no boxes or masks)."""

    def __init__(self, size, height, width, **kwargs):
        super().__init__(height, width, **kwargs)
        self.size = size

    def resized_shape(self, height, width):
        """(height, width) after the short-edge resize of a `height` x `width` image."""
        if height <= width:
            return self.size, self.size * width // height
        return self.size * height // width, self.size

    def transform_images(self, images, transformation=None, training=True):
        ops = self.backend
        h, w = images.shape[self.height_axis], images.shape[self.width_axis]
        if h is None or w is None:
            raise ValueError(
                f"{self.name} needs the images' height and width known, got shape {images.shape}."
            )
        new_h, new_w = self.resized_shape(h, w)
        if new_h < self.height or new_w < self.width:
            raise ValueError(
                f"{self.name}: a {h}x{w} image resized to {new_h}x{new_w} is smaller than the "
                f"{self.height}x{self.width} crop."
            )
        resized = ops.image.resize(
            images,
            (new_h, new_w),
            interpolation=self.interpolation,
            antialias=self.antialias,
            data_format=self.data_format,
        )
        if backend.is_int_dtype(images.dtype):
            info = np.iinfo(backend.standardize_dtype(images.dtype))
            resized = ops.numpy.clip(ops.numpy.round(resized), info.min, info.max)
            resized = ops.cast(resized, images.dtype)
        top = int(round((new_h - self.height) / 2.0))
        left = int(round((new_w - self.width) / 2.0))
        rows, cols = slice(top, top + self.height), slice(left, left + self.width)
        if self.data_format == "channels_last":
            return resized[:, rows, cols, :]
        return resized[:, :, rows, cols]

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="hrnet_keras")
class HRNetImageConverter(ImageConverter):
    """KerasHub's `ImageConverter` with a short-edge resize and center crop.

    Args:
        image_size: (height, width) of the crop, the model's input.
        resize_short_edge: the short edge before the crop; `None`: KerasHub's own resize to
            `image_size`.
        antialias: as Pillow resizes (default True).
        **kwargs: `ImageConverter`'s (`scale`, `offset`, `interpolation`, ...).
    """

    backbone_cls = HRNetBackbone

    def __init__(self, image_size=None, resize_short_edge=None, antialias=True, **kwargs):
        super().__init__(image_size=image_size, antialias=antialias, **kwargs)
        self.resize_short_edge = resize_short_edge
        if resize_short_edge is None:
            return
        if image_size is None:
            raise ValueError("resize_short_edge needs image_size, the (height, width) crop.")
        self.resizing = ResizeAndCenterCrop(
            resize_short_edge,
            *image_size,
            interpolation=self.interpolation,
            antialias=antialias,
            data_format=self.data_format,
            dtype=self.dtype_policy,
            name="resizing",
        )

    def get_config(self):
        return {**super().get_config(), "resize_short_edge": self.resize_short_edge}

    @classmethod
    def from_row(cls, model_or_name, **kwargs):
        """The converter of a row's test pipeline (a row name, or a model from
        `hrnet_keras.create_model`: `hrnet_keras.data_config`)."""
        p = pipeline_of(model_or_name)
        return cls(
            image_size=(p.crop, p.crop),
            resize_short_edge=p.resize_short_edge,
            interpolation=p.interpolation,
            scale=[1.0 / s for s in p.std],
            offset=[-m / s for m, s in zip(p.mean, p.std)],
            **kwargs,
        )
