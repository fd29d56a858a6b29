"""HRNet image classification in Keras 3, for TensorFlow, JAX and PyTorch.

    import hrnet_keras
    model = hrnet_keras.create_model("hrnet-w18", weights="imagenet")
    x = hrnet_keras.preprocess_input(hrnet_keras.load_image("cat.jpg")[None])
    hrnet_keras.decode_predictions(model.predict(x))
"""

from hrnet_keras.configs import list_models
from hrnet_keras.model import (
    HRNetW18,
    HRNetW30,
    HRNetW32,
    HRNetW40,
    HRNetW44,
    HRNetW48,
    HRNetW64,
    create_model,
)
from hrnet_keras.preprocessing import decode_predictions, load_image, preprocess_input

__version__ = "0.1.0"

__all__ = [
    "HRNetW18",
    "HRNetW30",
    "HRNetW32",
    "HRNetW40",
    "HRNetW44",
    "HRNetW48",
    "HRNetW64",
    "create_model",
    "decode_predictions",
    "list_models",
    "load_image",
    "preprocess_input",
]
