"""Printing to a stdout whose reader may leave early (`python -m hrnet_eval --list | head -1`)."""

import os
import sys


def quiet_print(*args, **kwargs):
    """`print`, but once stdout's reader has closed the pipe, stdout goes to /dev/null and
    the run goes on without a word (no BrokenPipeError, now or when Python exits)."""
    try:
        print(*args, **kwargs)
    except BrokenPipeError:
        if kwargs.get("file") not in (None, sys.stdout):
            raise
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
