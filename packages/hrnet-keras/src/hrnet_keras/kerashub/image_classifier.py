"""`HRNetImageClassifier`: KerasHub's `ImageClassifier` on `HRNetBackbone`.

Its head (average pooling, `predictions` Dense) is HRNet's (`neck.1`, `head.fc`), so a
1000-class row's weights fill the whole task.
"""

import keras
from keras_hub.models import ImageClassifier  # pants: no-infer-dep

from hrnet_keras.architecture import layer_name
from hrnet_keras.configs import IMAGENET_CLASSES
from hrnet_keras.kerashub.backbone import HRNetBackbone
from hrnet_keras.kerashub.image_classifier_preprocessor import HRNetImageClassifierPreprocessor
from hrnet_keras.kerashub.weights import copy_weights
from hrnet_keras.model import create_model

HEAD = "predictions"  # KerasHub's name of the classifier's Dense


@keras.saving.register_keras_serializable(package="hrnet_keras")
class HRNetImageClassifier(ImageClassifier):
    """HRNet image classification as a KerasHub task (see `keras_hub.models.ImageClassifier`)."""

    backbone_cls = HRNetBackbone
    preprocessor_cls = HRNetImageClassifierPreprocessor

    @classmethod
    def from_row(
        cls, name, *, weights=None, num_classes=IMAGENET_CLASSES, image_shape=None, **kwargs
    ):
        """The classifier of row `name` with its test pipeline as preprocessor.

        `weights` as `hrnet_keras.create_model` takes them; they fill the backbone, and the
        head too when `num_classes` is 1000 (another `num_classes`: a fresh head). Weights of
        another row (`"hrnet-w18-ssld"`) bring that row's pipeline, as in `create_model`.
        `kwargs`: `ImageClassifier`'s (`activation`, `pooling`, `head_dtype`, ...).
        """
        include_top = num_classes == IMAGENET_CLASSES
        source = None
        if weights is not None:
            source = create_model(name, weights=weights, include_top=include_top)
        backbone = HRNetBackbone(name, image_shape=image_shape)
        preprocessor = HRNetImageClassifierPreprocessor.from_row(name if source is None else source)
        task = cls(backbone=backbone, num_classes=num_classes, preprocessor=preprocessor, **kwargs)
        if source is None:
            return task
        copy_weights(source, backbone)
        if include_top:
            task.get_layer(HEAD).set_weights(source.get_layer(layer_name("head.fc")).get_weights())
        return task
