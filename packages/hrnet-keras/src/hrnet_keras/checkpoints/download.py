"""Downloads into the cache through `torch.hub.download_url_to_file`: atomic, sha256-checked."""

import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from hrnet_keras.files import atomic_write

CACHE_ENV = "HRNET_KERAS_CACHE"
TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """A download that failed; nothing is left behind."""


def cache_dir():
    """`$HRNET_KERAS_CACHE`, else `$XDG_CACHE_HOME/hrnet-keras` (~/.cache/hrnet-keras)."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
        root = os.path.join(base, "hrnet-keras")
    return Path(root)


def announced_size(url):
    """The Content-Length a HEAD request announces, or None."""
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return None
    return int(length) if length and length.isdigit() else None


def download(url, dest, *, sha256_prefix=None, progress=True):
    """Fetch `url` to `dest` with torch.hub (temp file, then rename); return dest.

    A sha256 prefix mismatch, a connection cut (without a prefix: a file
    shorter than the size a HEAD request announces) or a failed request raises
    `DownloadError` and leaves no file, neither `dest` nor a partial one.
    """
    size = None if sha256_prefix else announced_size(url)
    with atomic_write(dest) as tmp:
        _fetch(url, tmp, sha256_prefix, progress)
        received = tmp.stat().st_size
        if size is not None and received != size:
            raise DownloadError(
                f"Download of {url} was cut after {received} of {size} bytes; "
                "no file was kept. Run the command again."
            )
    return Path(dest)


def _fetch(url, tmp, sha256_prefix, progress):
    import torch.hub

    try:
        torch.hub.download_url_to_file(url, str(tmp), hash_prefix=sha256_prefix, progress=progress)
    except RuntimeError as exc:  # torch.hub's hash mismatch
        if sha256_prefix is None:
            raise
        got = re.search(r'got "([0-9a-f]+)"', str(exc))
        got = got.group(1)[: len(sha256_prefix)] if got else "?"
        raise DownloadError(
            f"Download of {url}: sha256 {got}... does not match the expected "
            f"{sha256_prefix}; the file was deleted."
        ) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"Download of {url} failed ({exc}); no file was kept.") from None
