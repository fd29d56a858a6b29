"""`HRNetModel`: the functional Keras model `create_model` returns, with its `pretrained_cfg`.

Registered as `hrnet_keras>HRNetModel`, so a saved `.keras` file records it and
`keras.models.load_model` revives it (after `import hrnet_keras.keras_model`, or any model
call of hrnet_keras, has registered the class) with its `pretrained_cfg`.
"""

import keras


@keras.saving.register_keras_serializable(package="hrnet_keras")
class HRNetModel(keras.Model):
    """A functional model that knows its row's test pipeline (`pretrained_cfg`, timm's name)."""

    # (*args, **kwargs): Keras revives it as a functional model, passing the config's extra
    # keys back here.
    def __init__(self, *args, pretrained_cfg=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pretrained_cfg = pretrained_cfg

    @property
    def pretrained_cfg(self):
        """The row's name, architecture and test pipeline (`hrnet_keras.data_config`)."""
        return self._pretrained_cfg

    @pretrained_cfg.setter
    def pretrained_cfg(self, cfg):
        object.__setattr__(self, "_pretrained_cfg", None if cfg is None else dict(cfg))

    def get_config(self):
        config = super().get_config()
        if self.pretrained_cfg is not None:
            config["pretrained_cfg"] = dict(self.pretrained_cfg)
        return config
