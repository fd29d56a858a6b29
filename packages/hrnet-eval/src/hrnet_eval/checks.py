"""Checks made before a cluster starts: the output folder and the weights files."""

import tempfile

from hrnet_eval.data import DataError
from hrnet_eval.weights import WeightsError


def check_output(output):
    """Create folder `output` if missing and check that files can be written there."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"--output {output} is a file, not a folder: give a folder.") from None
    except OSError as exc:
        raise DataError(
            f"--output {output} cannot be written ({exc.strerror}): give a writable folder."
        ) from None


def check_weights(spec):
    """Open `spec.weights` (a Keras .weights.h5) and read every tensor's name and shape,
    and its bytes: a truncated or garbled file fails here, naming it, not in a worker."""
    if spec.weights is None:
        return 0
    import h5py

    tensors = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            obj[()]  # reads the bytes: a truncated file fails here
            tensors.append((name, obj.shape))

    try:
        with h5py.File(spec.weights, "r") as f:
            f.visititems(visit)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(
            f"Weights file {spec.weights} of {spec.name} is truncated or not a Keras "
            f".weights.h5 ({first}): delete it and convert again (python -m "
            f"hrnet_keras.convert --download {spec.name} --out <that folder>)."
        ) from None
    if not tensors:
        raise WeightsError(
            f"Weights file {spec.weights} of {spec.name} holds no tensors: delete it and "
            "convert again."
        )
    return len(tensors)
