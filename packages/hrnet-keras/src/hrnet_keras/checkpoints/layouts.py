"""Checkpoint layouts, mapped onto the mmpretrain key names the Keras layers carry.

- mmcls/mmpretrain (the table's files): `backbone.*`, `neck.0.*`, `head.fc.*`.
- official HRNet-Image-Classification, which timm shares key for key: no
  prefix for the backbone; `incre_modules`, `downsamp_modules`, `final_layer`,
  `classifier`; its head convs carry biases, folded here into the BatchNorm
  that follows (BN(Wx + b) with running_mean m equals BN(Wx) with m - b).
"""

import re

MMCLS = "mmcls"
OFFICIAL = "official"  # also timm's layout

# official/timm prefix -> mmcls prefix, tried in order; the rest gets "backbone."
OFFICIAL_PREFIXES = (
    (re.compile(r"^incre_modules\.(\d+)\."), r"neck.0.increase_layers.\1."),
    (re.compile(r"^downsamp_modules\.(\d+)\.0\."), r"neck.0.downsample_layers.\1.conv."),
    (re.compile(r"^downsamp_modules\.(\d+)\.1\."), r"neck.0.downsample_layers.\1.bn."),
    (re.compile(r"^final_layer\.0\."), "neck.0.final_layer.conv."),
    (re.compile(r"^final_layer\.1\."), "neck.0.final_layer.bn."),
    (re.compile(r"^classifier\."), "head.fc."),
)


def detect_layout(state):
    keys = list(state)
    if any(k.startswith("backbone.") for k in keys):
        return MMCLS
    if any(k.startswith(("incre_modules.", "stage2.", "conv1.")) for k in keys):
        return OFFICIAL
    sample = ", ".join(keys[:3]) or "no keys"
    raise ValueError(
        "Unrecognised checkpoint layout (expected mmcls 'backbone.*' or official/timm "
        f"'stage2.*' keys; found {sample})."
    )


def official_to_mmcls_key(key):
    for pattern, replacement in OFFICIAL_PREFIXES:
        new, count = pattern.subn(replacement, key)
        if count:
            return new
    return "backbone." + key


def fold_conv_biases(state):
    """Fold every `X.conv.bias` into the `X.bn` after it; returns a new dict."""
    state = dict(state)
    for key in [k for k in state if k.endswith(".conv.bias")]:
        bn = key[: -len(".conv.bias")] + ".bn.running_mean"
        if bn not in state:
            raise ValueError(f"Conv bias {key} has no BatchNorm after it ({bn} missing).")
        state[bn] = state[bn] - state.pop(key)
    return state


def to_mmcls(state):
    """(layout, state with mmcls key names and no conv biases)."""
    layout = detect_layout(state)
    if layout == OFFICIAL:
        state = {official_to_mmcls_key(k): v for k, v in state.items()}
    return layout, fold_conv_biases(state)
