"""The package's errors: one base class, each error carrying the hint `main` prints with it."""

RESUME = "rerun the same command to resume"


class EvalError(Exception):
    """A run that cannot go on; the message says why, `hint` (or None) what to do next."""

    hint = None


class ResumableError(EvalError, RuntimeError):
    """The evaluation stopped part-way; finished shards are kept and a rerun resumes."""

    hint = RESUME


class WorkerError(RuntimeError):
    """A worker cannot do its unit (e.g. weights missing on its node, its environment set
    too late)."""


def one_line(exc):
    """The first line of an exception's message (of its cause, for a task's error)."""
    cause = getattr(exc, "cause", None)
    lines = [line.strip() for line in str(cause or exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
