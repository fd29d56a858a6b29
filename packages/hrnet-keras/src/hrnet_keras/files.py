"""Files that appear whole or not at all."""

import contextlib
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path):
    """Yield a temporary path beside `path`; it replaces `path` when the block succeeds.

    The temporary name keeps the suffixes of `path` (Keras checks `.weights.h5`
    and `.keras`); on an exception it is deleted and `path` is left as it was.
    The parent folder is created if missing.

        with atomic_write(out / "results.json") as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # as open() would create it, not mkstemp's 0600
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
