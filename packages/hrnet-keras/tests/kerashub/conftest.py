"""keras-hub for these tests where it is not installed (under Pants).

keras-hub 0.32.0 requires tensorflow-text, which requires the full `tensorflow` wheel
beside the stack's tensorflow-cpu; Pants 2.17 / pex 2.1.137 cannot resolve a requirement
without its dependencies. So the tests take the stack's requirements (`//:reqs`) as every
test does, and the wheels of keras-hub and of the two requirements it imports that the
stack lacks (regex, tokenizers) come as `file` targets (BUILD: URL, size and sha256
pinned). Unpacked here onto `sys.path`, they are what `pip install --no-deps` of those
three wheels installs. In an environment with keras-hub installed, nothing happens.
"""

import atexit
import glob
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _unpack_wheels():
    wheels = sorted(glob.glob(os.path.join(HERE, "*.whl")))
    if not wheels:
        return
    site = tempfile.mkdtemp(prefix="hrnet-kerashub-")
    atexit.register(shutil.rmtree, site, ignore_errors=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    sys.path.append(site)


if importlib.util.find_spec("keras_hub") is None:
    _unpack_wheels()
