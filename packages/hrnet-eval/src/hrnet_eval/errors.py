"""The package's errors: one base class, each error carrying the hint `main` prints with it."""

RESUME = "rerun the same command to resume"


class EvalError(Exception):
    """A run that cannot go on; the message says why, `hint` (or None) what to do next."""

    hint = None


class ResumableError(EvalError, RuntimeError):
    """The evaluation stopped part-way; finished shards are kept and a rerun resumes."""

    hint = RESUME
