"""Each row's test pipeline as timm's `pretrained_cfg` / `resolve_data_config` give it.

A model from `create_model` carries its row's `pretrained_cfg` (kept in its Keras config,
so through `save` / `keras.models.load_model`); `data_config(model_or_name)` returns the
part `timm.data.create_transform(**cfg)` takes: `input_size`, `interpolation`, `mean`,
`std` (0-1 scale, as timm's), `crop_pct`, `crop_mode`. timm's names of the table's own
checkpoints (`hrnet_w18_ssld.paddle_in1k`) give timm's pipeline for them. No Keras here.
"""

import math

from hrnet_keras.configs import ALIASES, PRESETS, SAME_WEIGHTS, PipelineConfig, get_preset

DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
_SCALE = 255.0  # timm's mean / std are for 0-1 pixels, this project's for 0-255


def pipeline(name):
    """The `PipelineConfig` of a row, an alias, or timm's name of a table checkpoint."""
    if name in SAME_WEIGHTS:
        return SAME_WEIGHTS[name].pipeline
    return get_preset(name).pipeline


def pretrained_cfg(name):
    """The dict a model of row `name` carries: its name, architecture and test pipeline."""
    p = pipeline(name)
    row = name if name in SAME_WEIGHTS else get_preset(name).name
    return {
        "name": row,
        "architecture": get_preset(name).arch,
        "input_size": [3, p.crop, p.crop],
        "interpolation": p.interpolation,
        "mean": [round(m / _SCALE, 6) for m in p.mean],
        "std": [round(s / _SCALE, 6) for s in p.std],
        "crop_pct": p.crop_pct,
        "crop_mode": "center",
        "resize_short_edge": p.resize_short_edge,
    }


def hub_row(handle):
    """The row (or timm name) a `hf://OWNER/NAME[@REV]` handle names, or None."""
    repo = handle.removeprefix("hf://").split("@")[0]
    for preset in PRESETS.values():
        if preset.hub_repo == repo:
            return preset.name
    owner, _, name = repo.partition("/")
    return name if owner == "timm" and name in SAME_WEIGHTS else None


def weights_row(weights):
    """The row (or timm name) whose pipeline `create_model`'s `weights` stand for, or None
    ("imagenet", a file, an unknown hub repository: the model's own row stays)."""
    if not isinstance(weights, str) or weights == "imagenet":
        return None
    if weights.startswith("hf://"):
        return hub_row(weights)
    if weights in SAME_WEIGHTS or weights in PRESETS or weights in ALIASES:
        return weights
    return None


def data_config(model_or_name):
    """timm's data config of a model built here (its `pretrained_cfg`) or of a row name.

    `timm.data.create_transform(**data_config(x))` is the row's eval transform;
    `load_image(path, model=x)` and `preprocess_input(images, model=x)` apply it here.
    """
    if isinstance(model_or_name, str):
        cfg = pretrained_cfg(model_or_name)
    else:
        cfg = getattr(model_or_name, "pretrained_cfg", None)
        if not cfg:
            name = getattr(model_or_name, "name", type(model_or_name).__name__)
            raise ValueError(
                f"Model {name!r} carries no pretrained_cfg (not built by "
                "hrnet_keras.create_model, or saved before it kept one); pass the row name "
                "instead, e.g. data_config('hrnet-w18')."
            )
    out = {k: cfg[k] for k in DATA_CONFIG_KEYS}
    out["input_size"] = tuple(out["input_size"])
    out["mean"], out["std"] = tuple(out["mean"]), tuple(out["std"])
    return out


def pipeline_of(model_or_name):
    """The `PipelineConfig` (0-255 mean / std) that `data_config(model_or_name)` describes."""
    cfg = data_config(model_or_name)
    crop = cfg["input_size"][-1]
    return PipelineConfig(
        resize_short_edge=math.floor(crop / cfg["crop_pct"]),
        crop=crop,
        interpolation=cfg["interpolation"],
        mean=tuple(m * _SCALE for m in cfg["mean"]),
        std=tuple(s * _SCALE for s in cfg["std"]),
        crop_pct=cfg["crop_pct"],
    )
