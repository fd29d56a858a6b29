"""`HRNetImageClassifierPreprocessor`: KerasHub's preprocessor around `HRNetImageConverter`."""

import keras
from keras_hub.models import ImageClassifierPreprocessor  # pants: no-infer-dep

from hrnet_keras.kerashub.backbone import HRNetBackbone
from hrnet_keras.kerashub.image_converter import HRNetImageConverter


@keras.saving.register_keras_serializable(package="hrnet_keras")
class HRNetImageClassifierPreprocessor(ImageClassifierPreprocessor):
    """Images (0-255 RGB) to `HRNetImageClassifier` inputs with a row's test pipeline."""

    backbone_cls = HRNetBackbone
    image_converter_cls = HRNetImageConverter

    @classmethod
    def from_row(cls, model_or_name, **kwargs):
        """The preprocessor of a row's test pipeline (`HRNetImageConverter.from_row`)."""
        return cls(image_converter=HRNetImageConverter.from_row(model_or_name), **kwargs)
