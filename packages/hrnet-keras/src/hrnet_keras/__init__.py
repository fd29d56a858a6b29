"""HRNet image classification in Keras 3, for TensorFlow, JAX and PyTorch.

    import hrnet_keras
    model = hrnet_keras.create_model("hrnet-w18", weights="imagenet")
    x = hrnet_keras.preprocess_input(hrnet_keras.load_image("cat.jpg", model=model)[None])
    hrnet_keras.decode_predictions(model.predict(x))

The package imports lazily (PEP 562): `import hrnet_keras` and its data modules
(`configs`, `files`, `preprocessing`'s image loading) load no Keras; the first use of a
model name (`create_model`, `HRNetW18`, ...) imports Keras and its backend.
"""

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "list_models": "configs",
    "create_model": "model",
    **{f"HRNetW{w}": "model" for w in (18, 30, 32, 40, 44, 48, 64)},
    "HRNetW18Small": "model",
    "HRNetW18SmallV2": "model",
    "decode_predictions": "preprocessing",
    "load_image": "preprocessing",
    "preprocess_input": "preprocessing",
    "data_config": "pretrained",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    # Plain import statements (not importlib), so that tools reading imports (Pants) see them.
    where = _EXPORTS.get(name)
    if where == "configs":
        from hrnet_keras import configs as module
    elif where == "model":
        from hrnet_keras import model as module
    elif where == "preprocessing":
        from hrnet_keras import preprocessing as module
    elif where == "pretrained":
        from hrnet_keras import pretrained as module
    else:
        raise AttributeError(f"module 'hrnet_keras' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
