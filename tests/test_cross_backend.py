"""TensorFlow, JAX and torch, each in its own process, on the same converted weights.

Each backend converts the same reference checkpoint and saves a `.keras`;
then each backend loads every other backend's `.keras` with plain
`keras.models.load_model`. All logits agree with each other and with the
mmpretrain reference.
"""

import os
import subprocess
import sys

import numpy as np

BACKENDS = ("tensorflow", "jax", "torch")
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "backend_worker.py")
TOLERANCE = 1e-4


def _run(backend, *args):
    env = dict(
        os.environ,
        KERAS_BACKEND=backend,
        PYTHONPATH=os.pathsep.join(map(os.path.abspath, sys.path)),
    )
    proc = subprocess.run(
        [sys.executable, WORKER, *map(str, args)], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{backend} worker failed:\n{proc.stderr[-3000:]}"


def test_backends_agree_and_keras_files_load_everywhere(
    tmp_path, w18_files, images, reference_w18_logits
):
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, images[:1])
    want = reference_w18_logits[:1]
    dirs = {b: tmp_path / b for b in BACKENDS}
    for backend, out in dirs.items():
        out.mkdir()
        _run(backend, "save", w18_files["mmcls"], inputs, out)

    logits = {b: np.load(dirs[b] / "logits.npy") for b in BACKENDS}
    report = {b: float(np.abs(v - want).max()) for b, v in logits.items()}
    print("max |logits - reference| per backend:", report)
    assert max(report.values()) <= TOLERANCE, report
    for a in BACKENDS:
        for b in BACKENDS:
            assert np.abs(logits[a] - logits[b]).max() <= TOLERANCE, (a, b)

    for backend in BACKENDS:  # load the other backends' .keras files
        others = [b for b in BACKENDS if b != backend]
        _run(backend, "load", inputs, dirs[backend], *[dirs[o] / "hrnet-w18.keras" for o in others])
        for i, other in enumerate(others):
            got = np.load(dirs[backend] / f"logits-{i}.npy")
            diff = float(np.abs(got - logits[other]).max())
            print(f"{other} .keras loaded on {backend}: max diff {diff:.2e}")
            assert diff <= TOLERANCE, (other, backend, diff)
