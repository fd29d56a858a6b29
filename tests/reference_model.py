"""The mmpretrain reference HRNet, for tests: build, randomise, save, evaluate.

Checkpoints written here have exactly the published files' layout
(`{"meta", "state_dict"}` with mmcls keys), or the official/timm layout.
"""

import os

import numpy as np

CONFIG_DIR = ("configs", "hrnet")


def _config_path(config_name):
    import mmpretrain

    root = os.path.join(os.path.dirname(mmpretrain.__file__), ".mim", *CONFIG_DIR)
    return os.path.join(root, config_name)


def build_reference(name, device="cpu"):
    """The mmpretrain ImageClassifier of row `name`, in eval mode on `device` ("meta": shapes
    only, no weights drawn)."""
    import torch
    from mmengine.config import Config
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    from hrnet_keras.configs import get_preset

    register_all_modules()
    cfg = Config.fromfile(_config_path(get_preset(name).mmpretrain_config))
    with torch.device(device):
        model = MODELS.build(cfg.model)
    torch.manual_seed(0)
    return model.eval()


def mmcv_complexity(model, image_size=224):
    """(params, FLOPs) of `model`'s forward pass on one image by mmcv's counter
    (`get_model_complexity_info`, the rules of the mmclassification table), in the order
    of `hrnet_keras.complexity.measure`; on the meta device it counts from the shapes alone."""
    from mmcv.cnn.utils.flops_counter import get_model_complexity_info

    flops, params = get_model_complexity_info(
        model, (3, image_size, image_size), print_per_layer_stat=False, as_strings=False
    )
    return int(params), int(flops)


def randomize(model, seed=0):
    """Random weights and BatchNorm statistics, so every tensor matters."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                value.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
            elif key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=gen) * 0.5 + 0.75)
            elif key.endswith(("running_mean", ".bias")):
                value.copy_(torch.randn(value.shape, generator=gen) * 0.1)
            elif key.endswith(".weight") and value.ndim == 1:  # BN gamma, damped
                value.copy_(torch.rand(value.shape, generator=gen) * 0.4 + 0.3)
            else:  # conv / linear weights, scaled so activations stay O(1)
                gain = 8.0 if value.ndim == 2 else 1.0  # spread the logits
                fan_in = value[0].numel()
                std = gain / fan_in**0.5
                value.copy_(torch.randn(value.shape, generator=gen) * std)
    return model


def save_mmcls(model, path):
    """Save like the published files: {"meta": ..., "state_dict": ...}."""
    import torch

    meta = {"mmcls_version": "0.20.1", "epoch": 100, "CLASSES": ["c%d" % i for i in range(3)]}
    torch.save({"meta": meta, "state_dict": model.state_dict()}, path)
    return path


OFFICIAL_RENAMES = (
    ("neck.0.increase_layers.", "incre_modules."),
    ("neck.0.final_layer.conv.", "final_layer.0."),
    ("neck.0.final_layer.bn.", "final_layer.1."),
    ("head.fc.", "classifier."),
    ("backbone.", ""),
)


def _official_key(key):
    if key.startswith("neck.0.downsample_layers."):
        i, part, rest = key[len("neck.0.downsample_layers.") :].split(".", 2)
        return f"downsamp_modules.{i}.{'0' if part == 'conv' else '1'}.{rest}"
    for old, new in OFFICIAL_RENAMES:
        if key.startswith(old):
            return new + key[len(old) :]
    raise KeyError(key)


def save_official(model, path, seed=1):
    """Save in the official/timm layout, with the head convs' biases made non-zero.

    Each bias b is paired with running_mean + b in the BatchNorm after it, so
    the file computes exactly what `model` computes.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = {_official_key(k): v.clone() for k, v in model.state_dict().items()}
    convs = [f"downsamp_modules.{i}.0" for i in range(3)] + ["final_layer.0"]
    for conv in convs:
        bn = conv[:-1] + "1"
        bias = torch.randn(state[f"{conv}.weight"].shape[0], generator=gen) * 0.2
        state[f"{conv}.bias"] = bias
        state[f"{bn}.running_mean"] = state[f"{bn}.running_mean"] + bias
    torch.save(state, path)
    return path


def reference_logits(model, images_nhwc):
    """Logits of the torch model on preprocessed float32 NHWC images."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(np.transpose(images_nhwc, (0, 3, 1, 2))))
    with torch.no_grad():
        return model(x, mode="tensor").numpy()


def reference_pipeline(paths):
    """mmpretrain's own test pipeline + data preprocessor: float32 NHWC, normalised."""
    import torch
    from mmengine.dataset import Compose
    from mmpretrain.utils import register_all_modules

    register_all_modules()
    pipeline = Compose(
        [
            dict(type="LoadImageFromFile"),
            dict(type="ResizeEdge", scale=256, edge="short", backend="pillow"),
            dict(type="CenterCrop", crop_size=224),
            dict(type="PackInputs"),
        ]
    )
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    out = []
    for path in paths:
        chw_bgr = pipeline(dict(img_path=str(path)))["inputs"].float()
        chw = chw_bgr[[2, 1, 0]]  # the data preprocessor's to_rgb
        out.append(((chw - mean) / std).permute(1, 2, 0).numpy())
    return np.stack(out)


def predict_topk(model, images_nhwc, k=5, batch_size=16):
    """Top-k class indices of the torch model, batch by batch."""
    tops = []
    for start in range(0, len(images_nhwc), batch_size):
        logits = reference_logits(model, images_nhwc[start : start + batch_size])
        tops.append(np.argsort(-logits, axis=1, kind="stable")[:, :k])
    return np.concatenate(tops)


def make_discriminative(model, images_nhwc, spread=3.0):
    """Make a randomised model's predictions differ from image to image.

    Random BatchNorm statistics let constant offsets drown the input after a few
    dozen layers, so every image gets the same classes. This sets every BatchNorm's
    running statistics to those of `images_nhwc` (preprocessed, NHWC) and centres
    the classifier on their mean feature, its logits scaled to a std of `spread`.
    An mmpretrain classifier or a timm model (`forward_features` / `forward_head`).
    """
    import torch

    is_timm = hasattr(model, "forward_head")

    x = torch.from_numpy(np.ascontiguousarray(np.transpose(images_nhwc, (0, 3, 1, 2))))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a plain average over the batches seen: here, one
        model.train()
        model(x) if is_timm else model(x, mode="tensor")
        model.eval()
        for norm in norms:
            norm.momentum = 0.1
        if is_timm:
            features = model.forward_head(model.forward_features(x), pre_logits=True)
            fc = model.get_classifier()
        else:
            features = model.extract_feat(x)[-1]
            fc = model.head.fc
        centred = (features - features.mean(dim=0)) @ fc.weight.T
        fc.weight.mul_(spread / centred.std())
        fc.bias.copy_(-(features.mean(dim=0) @ fc.weight.T))
    return model


def timm_checkpoint(timm_name, path, seed=0, **kwargs):
    """A timm HRNet (random init, then `randomize`d) saved as safetensors, as timm
    publishes weights; returns the torch model (eval mode) and `path`."""
    import timm

    model = randomize(timm.create_model(timm_name, pretrained=False, **kwargs).eval(), seed=seed)
    return model, save_safetensors(model, path)


def save_safetensors(model, path):
    """`model`'s state dict as safetensors (timm's published format); returns `path`."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def timm_pipeline(model, paths):
    """timm's own eval transform for `model`'s pretrained_cfg (resize, crop, interpolation,
    normalisation) on image files read with PIL: float32 NHWC."""
    import timm.data
    from PIL import Image

    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    out = []
    for path in paths:
        with Image.open(path) as image:
            out.append(transform(image.convert("RGB")).permute(1, 2, 0).numpy())
    return np.stack(out)


def timm_forward(model, images_nhwc):
    """Outputs of a timm model on float32 NHWC images: logits, or NHWC feature maps."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(np.transpose(images_nhwc, (0, 3, 1, 2))))
    with torch.no_grad():
        out = model(x)
    if isinstance(out, (list, tuple)):
        return [t.numpy().transpose(0, 2, 3, 1) for t in out]
    return out.numpy()
