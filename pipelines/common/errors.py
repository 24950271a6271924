"""The errors a job reports as one line (what the user can fix), and how the entry points report them.

Bad input (``ValueError`` and its kinds: :class:`~vloss.data.errors.DataFormatError`, weights that do
not fit, unknown ``--set`` keys), a missing file, and :class:`JobError` (a job that cannot finish:
resources the cluster lacks, every image failing) end a job with ``PROG: error: MESSAGE`` on stderr
and exit status 2. Anything else is a bug and keeps its traceback; ``--verbose`` keeps the traceback
of every error.
"""

from __future__ import annotations

import sys
from typing import Callable


class JobError(RuntimeError):
    """A job cannot finish for a reason the user can act on (the message says which)."""


USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, JobError)


def report_errors(prog: str, fn: Callable[[], int], verbose: bool = False) -> int:
    """Run ``fn``; a user error becomes one line on stderr and exit status 2.

    Args:
        prog: the command's name (``python -m jobs.train``).
        fn: the job's body, returning its exit status.
        verbose: let the error propagate with its traceback.
    """
    try:
        return fn()
    except USER_ERRORS as exc:
        if verbose:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
