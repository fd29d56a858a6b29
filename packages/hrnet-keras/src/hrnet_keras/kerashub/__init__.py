"""HRNet as KerasHub models: `HRNetBackbone`, `HRNetImageClassifier`,
`HRNetImageClassifierPreprocessor` and `HRNetImageConverter`.

Importing this package imports keras_hub and registers the classes (as `import keras_hub`
registers its own), so that `keras_hub.models.ImageClassifier.from_preset(DIR)` and
`keras_hub.models.Backbone.from_preset(DIR)` load presets that `save_to_preset` wrote,
from a folder or a `hf://` handle. The rest of hrnet_keras imports nothing of keras_hub.
"""

try:
    import keras_hub  # noqa: F401  # pants: no-infer-dep
except ImportError as exc:
    raise ImportError(
        f"hrnet_keras.kerashub needs keras-hub ({exc}); install it without its TensorFlow "
        "requirement: pip install 'hrnet-keras[keras-hub]' && pip install --no-deps "
        "keras-hub==0.32.0 (packages/hrnet-keras/README.md, KerasHub)."
    ) from None

from hrnet_keras.kerashub.backbone import HRNetBackbone  # noqa: E402
from hrnet_keras.kerashub.image_classifier import HRNetImageClassifier  # noqa: E402
from hrnet_keras.kerashub.image_classifier_preprocessor import (  # noqa: E402
    HRNetImageClassifierPreprocessor,
)
from hrnet_keras.kerashub.image_converter import HRNetImageConverter  # noqa: E402

__all__ = [
    "HRNetBackbone",
    "HRNetImageClassifier",
    "HRNetImageClassifierPreprocessor",
    "HRNetImageConverter",
]
