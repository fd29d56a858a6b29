"""Which architecture and row a checkpoint file holds, from its tensors' shapes and its name."""

import os

from hrnet_keras.checkpoints.layouts import to_mmcls
from hrnet_keras.checkpoints.reader import CheckpointError, read_state_dict
from hrnet_keras.configs import ARCHS, published_row


def infer_arch(path):
    """The `configs.ARCHS` name whose layout (width, blocks, modules: `keymap.state_layout`)
    the checkpoint at `path` has; a `CheckpointError` naming the file otherwise."""
    from hrnet_keras.checkpoints.keymap import checkpoint_arch, state_layout

    try:
        _, state = to_mmcls(read_state_dict(path))
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    found = checkpoint_arch(state)
    if found is None:
        width, blocks, planes, modules, per_branch = state_layout(state)
        raise CheckpointError(
            f"{path} fits no known HRNet (width {width}, stage 1 {blocks} x {planes} planes, "
            f"modules per stage {modules}, blocks {per_branch}); known: {', '.join(ARCHS)}."
        )
    return found


def infer_row(path):
    """(row or architecture name, how it was found) for a checkpoint file: the published
    row its file name is, else the architecture its shapes give."""
    row = published_row(os.path.basename(os.fspath(path)))
    if row is not None:
        return row.name, "its published file name"
    return infer_arch(path), "its tensors' shapes"
