"""Folders whose contents are trusted when read back: only their owner (or root) may write them.

`--output` (its shard records are reused on resume), `--compile-cache` (programs and XLA's
compiled code) and a `--weights-dir` converted into are refused, as ssh refuses a key
another user could have written, when a user other than this one or root can write the
folder or any folder above it (a group- or world-writable folder without the sticky bit
lets that user rename ours away and put theirs in its place). A folder that does not exist
yet is judged by the folders above it, and created 0700. `check_private` is one `os.stat`
per folder, so it can run on any node of a cluster.
"""

import atexit
import os
import shutil
import stat
import tempfile
from pathlib import Path

from hrnet_eval.errors import EvalError

PRIVATE_MODE = 0o700


class PermissionsError(EvalError, PermissionError):
    """A folder read back by the evaluator that another user can write."""


def writable_by_others(path, uid=None):
    """(why, the folder, "chmod" or "chown": what fixes it) where a user other than `uid`
    (default: this process's) or root can write `path` or a folder above it (the first
    such folder), or None if no one can."""
    uid = os.geteuid() if uid is None else uid
    path = Path(os.path.abspath(path))
    for folder in (path, *path.parents):
        try:
            st = os.stat(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue  # judged by the folders above it (created private; below a file: refused later)
        if st.st_uid not in (uid, 0):
            return f"{folder} belongs to user {st.st_uid}, who can write it", folder, "chown"
        writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        if writable and not (folder != path and st.st_mode & stat.S_ISVTX):
            who = "every user" if st.st_mode & stat.S_IWOTH else "its group"
            return (
                f"{folder} can be written by {who} (mode {st.st_mode & 0o7777:o})",
                folder,
                "chmod",
            )
    return None


def check_private(path, flag):
    """Raise `PermissionsError` (one line: why, and the command that fixes it) if a user
    other than this one or root can write folder `path` (given as `flag`) or one above it."""
    found = writable_by_others(path)
    if found is None:
        return
    why, folder, fix = found
    if fix == "chown":
        command = f"chown -R {os.geteuid()} {folder}"
    else:
        command = f"chmod {'-R ' if folder == Path(os.path.abspath(path)) else ''}go-w {folder}"
    raise PermissionsError(
        f"{flag} {path}: {why}, and what is stored there is read back as trusted; "
        f"fix it with `{command}` (or give a folder only you can write)."
    )


def temporary_folder():
    """A folder of this process's own (0700), removed at its exit."""
    folder = tempfile.mkdtemp(prefix="hrnet-eval-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def make_private(path):
    """Create folder `path` and the missing folders above it, each 0700 (umask applied)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not os.path.lexists(p)][::-1]
    for folder in missing:
        folder.mkdir(mode=PRIVATE_MODE, exist_ok=True)
    return missing
