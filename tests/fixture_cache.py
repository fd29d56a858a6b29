"""Expensive test fixtures built once and kept on disk, shared by every test process.

Pants runs test files in separate processes and sandboxes; a fixture that takes minutes to
make (reference checkpoints, converted weights) is built by the first process that asks and
read by the others. The folder's name holds a digest of everything the build reads (its
arguments, its own source and the source files of the code it runs, the versions of the
frameworks), so a change to any of them builds a new one. A lock makes the others wait for
the first; the folder appears whole or not at all (built aside, then renamed).

The root is `$HRNET_TEST_CACHE`, else `hrnet-test-cache` in the temp dir (as the JAX cache).
"""

import hashlib
import importlib.metadata
import importlib.util
import inspect
import json
import os
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock

DISTRIBUTIONS = ("torch", "mmpretrain", "mmengine", "timm", "keras", "numpy", "scikit-image")


def root():
    return Path(
        os.environ.get("HRNET_TEST_CACHE") or Path(tempfile.gettempdir()) / "hrnet-test-cache"
    )


def source_digest(*modules):
    """sha256 over the source files of `modules` (a package: all its .py and .json files)."""
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin)
        files = sorted(origin.parent.rglob("*.py")) + sorted(origin.parent.rglob("*.json"))
        for path in files if origin.name == "__init__.py" else [origin]:
            digest.update(str(path.relative_to(origin.parent)).encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _versions():
    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def cached_dir(name, build, *, key, modules=()):
    """The folder `build(folder)` fills, made once for `key` and the sources of `modules`.

    `key`: JSON-serialisable arguments of the build (seeds, rows, sizes); the source of
    `build` itself is part of the digest.
    """
    sources = source_digest(__name__, *modules) + inspect.getsource(build)
    stamp = json.dumps({"key": key, "sources": sources, "versions": _versions()}, sort_keys=True)
    folder = root() / f"{name}-{hashlib.sha256(stamp.encode()).hexdigest()[:16]}"
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        if folder.is_dir():  # another process built it while this one waited
            return folder
        aside = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
        try:
            build(aside)
            (aside / "stamp.json").write_text(stamp)
            os.rename(aside, folder)
        except BaseException:
            shutil.rmtree(aside, ignore_errors=True)
            raise
    return folder
