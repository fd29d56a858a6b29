"""Read checkpoint files into {name: numpy array} without running pickled code."""

import os
import pickle

import numpy as np

STATE_DICT_KEYS = ("state_dict", "model", "module")


class CheckpointError(ValueError):
    """A checkpoint that cannot be converted; the message says what and where."""


def _to_numpy(value):
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _unwrap(obj, path):
    """The tensor dict inside a checkpoint: bare, or under 'state_dict' / 'model'."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}.")
    for key in STATE_DICT_KEYS:
        if key in obj and isinstance(obj[key], dict):
            return obj[key]
    return obj


def read_torch(path):
    """A `.pth`/`.pt`/`.bin` file via `torch.load(weights_only=True)`."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsafe content"
        raise CheckpointError(
            f"Refusing to load {path}: it carries pickled code or objects beyond "
            f"tensors ({first}). Nothing from it was run; convert only checkpoints "
            "you trust, saved as plain tensors."
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"Cannot read checkpoint {path}: {exc}") from None
    state = _unwrap(obj, path)
    return {k: _to_numpy(v) for k, v in state.items() if not isinstance(v, (dict, str))}


def read_safetensors(path):
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"Cannot read safetensors file {path}: {exc}") from None


def read_state_dict(path):
    """{key: array} from a .pth/.pt/.bin (torch) or .safetensors file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint file not found: {path}")
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    return read_torch(path)
