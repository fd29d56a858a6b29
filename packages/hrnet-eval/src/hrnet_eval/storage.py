"""`--data` in object storage: `s3://bucket/prefix` and `gs://bucket/prefix`, read through
`pyarrow.fs`.

Only URIs (plain strings) travel between processes: each process builds its own
filesystem with `pyarrow.fs.FileSystem.from_uri`, once per bucket, so credentials and
endpoints come from that process's standard chains (AWS_* variables including
AWS_ENDPOINT_URL, ~/.aws files, instance roles; Google's application default
credentials), never from a pickled object. Credentials in the URI itself are refused.
"""

import functools
import posixpath
from urllib.parse import urlsplit

SCHEMES = ("s3", "gs", "gcs")


def is_uri(path):
    """Whether `path` names object storage (s3://, gs://, gcs://) rather than a local path."""
    return isinstance(path, str) and urlsplit(path).scheme in SCHEMES


def refusal(uri):
    """Why `uri` is refused (None when it is fine): no bucket, or credentials or options
    in the URI, which would end up in logs and results."""
    parts = urlsplit(uri)
    if "@" in parts.netloc or parts.query:
        return (
            f"{parts.scheme}:// URIs take no credentials or options (user info or ?query): "
            f"give s3://bucket/prefix and set credentials and endpoints in the environment "
            "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ~/.aws, an "
            "instance role; Google application default credentials)."
        )
    if not parts.netloc:
        return f"{uri} names no bucket: give {parts.scheme}://bucket/prefix."
    return None


def join(uri, *names):
    """`uri` with `names` appended, '/'-separated."""
    return "/".join([uri.rstrip("/"), *(n.strip("/") for n in names)])


def bucket(uri):
    """The URI of `uri`'s bucket."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


@functools.lru_cache(maxsize=None)
def _filesystem(scheme, bucket):
    from pyarrow import fs

    return fs.FileSystem.from_uri(f"{scheme}://{bucket}")[0]


def filesystem(uri):
    """(pyarrow FileSystem, path in it) of `uri`; the filesystem is made once per bucket in
    each process, from that process's environment."""
    parts = urlsplit(uri)
    path = (parts.netloc + parts.path).rstrip("/")
    return _filesystem(parts.scheme, parts.netloc), path


def uri_of(uri, path):
    """The URI of `path` (a path in `uri`'s filesystem, bucket first)."""
    return f"{urlsplit(uri).scheme}://{path}"


def stamp(info):
    """What changes when an object is replaced: its size and modification time (ns)."""
    return f"{info.size}\t{info.mtime_ns}"


def info(uri):
    """pyarrow `FileInfo` of `uri` (type NotFound when nothing is there)."""
    fs, path = filesystem(uri)
    return fs.get_file_info(path)


def listdir(uri):
    """({folder name: URI}, {file name: FileInfo}) directly under `uri` (one listing)."""
    from pyarrow import fs as pafs

    filesystem_, path = filesystem(uri)
    dirs, files = {}, {}
    for entry in filesystem_.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        name = posixpath.basename(entry.path)
        if entry.type == pafs.FileType.Directory:
            dirs[name] = uri_of(uri, entry.path)
        elif entry.type == pafs.FileType.File:
            files[name] = entry
    return dirs, files


def walk(uri):
    """{path relative to `uri`: FileInfo} of every object under `uri` (one recursive
    listing, paged by the store)."""
    from pyarrow import fs as pafs

    filesystem_, path = filesystem(uri)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return {
        entry.path[len(path) + 1 :]: entry
        for entry in filesystem_.get_file_info(selector)
        if entry.type == pafs.FileType.File
    }


@functools.lru_cache(maxsize=16)
def _opened(uri):
    filesystem_, path = filesystem(uri)
    return filesystem_.open_input_file(path)


def read(uri, offset=0, length=None):
    """The bytes of object `uri`: all of them, or `length` bytes at `offset` (one ranged
    read; the open object is kept, so a chunk's reads in one container cost one lookup).
    Raises OSError."""
    import pyarrow

    try:
        if length is None:
            filesystem_, path = filesystem(uri)
            with filesystem_.open_input_stream(path) as f:
                return f.read()
        return _opened(uri).read_at(length, offset)
    except pyarrow.ArrowException as exc:
        if isinstance(exc, OSError):
            raise
        raise OSError(str(exc)) from None


def open_stream(uri, buffer_size=8 << 20):
    """A sequential, buffered reader of object `uri` (for reading a container's index)."""
    filesystem_, path = filesystem(uri)
    return filesystem_.open_input_stream(path, buffer_size=buffer_size)
