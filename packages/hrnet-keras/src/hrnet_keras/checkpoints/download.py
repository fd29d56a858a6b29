"""Downloads into the cache: atomic, sha256-checked, with a progress bar."""

import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

CACHE_ENV = "HRNET_KERAS_CACHE"
HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$")
CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that failed; nothing is left behind."""


def cache_dir():
    """`$HRNET_KERAS_CACHE`, else `$XDG_CACHE_HOME/hrnet-keras` (~/.cache/hrnet-keras)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = os.path.join(base, "hrnet-keras")
    return Path(root)


def hash_prefix_from_name(name):
    """The sha256 prefix carried in a file name like `...-0c10b180.pth`, or None."""
    match = HASH_IN_NAME.search(name)
    return match.group(1) if match else None


def download(url, dest, *, sha256_prefix=None, progress=True, timeout=60):
    """Fetch `url` to `dest` via a temp file; verify the sha256 prefix; return dest.

    A hash mismatch or a connection cut raises `DownloadError` and leaves no
    file (neither `dest` nor a partial one).
    """
    from tqdm.auto import tqdm

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    digest = hashlib.sha256()
    received = 0
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                total = response.headers.get("Content-Length")
                total = int(total) if total else None
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress
                ) as bar:
                    while True:
                        chunk = response.read(CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        if total is not None and received != total:
            raise DownloadError(
                f"Download of {url} was cut after {received} of {total} bytes; "
                "no file was kept. Run the command again."
            )
        got = digest.hexdigest()
        if sha256_prefix and not got.startswith(sha256_prefix):
            raise DownloadError(
                f"Download of {url}: sha256 {got[:len(sha256_prefix)]}... does not match "
                f"the expected {sha256_prefix}; the file was deleted."
            )
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise DownloadError(
            f"Download of {url} failed after {received} bytes ({exc}); no file was kept."
        ) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
