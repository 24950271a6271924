"""The errors a job reports as one line (what the user can fix), and how the entry points report them.

Bad input (``ValueError`` and its kinds: :class:`~vloss.data.errors.DataFormatError`, weights that do
not fit, unknown ``--set`` keys), a missing file, and :class:`JobError` (a job that cannot finish:
resources the cluster lacks, every image failing) end a job with ``PROG: error: MESSAGE`` on stderr
and exit status 2. Anything else is a bug and keeps its traceback; ``--verbose`` keeps the traceback
of every error.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable


class JobError(RuntimeError):
    """A job cannot finish for a reason the user can act on (the message says which)."""


USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, JobError)
SIGTERM_EXIT = 128 + signal.SIGTERM  # 143, what a shell and Kubernetes expect from a SIGTERM'd process


class Terminated(BaseException):
    """SIGTERM (a scheduler, Kubernetes, ``kill``): raised in the main thread to stop the job cleanly.

    A ``BaseException`` like ``KeyboardInterrupt``, so that code catching ``Exception`` does not
    swallow it; Ray's blocking calls check signals and raise it where they wait.
    """


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def install_sigterm() -> None:
    """Turn SIGTERM into :class:`Terminated` in the main thread (no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def report_errors(prog: str, fn: Callable[[], int], verbose: bool = False) -> int:
    """Run ``fn``; a user error becomes one line on stderr and exit status 2.

    Args:
        prog: the command's name (``python -m jobs.train``).
        fn: the job's body, returning its exit status.
        verbose: let the error propagate with its traceback.
    """
    install_sigterm()
    try:
        return fn()
    except Terminated:
        print(f"{prog}: stopped by SIGTERM; what was complete is kept (finished shards, the latest "
              f"checkpoint): re-run the same command to continue", file=sys.stderr)
        return SIGTERM_EXIT
    except USER_ERRORS as exc:
        if verbose:
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RecursionError) as exc:  # the machine or the store, not the code: one line
        if verbose:
            raise
        print(f"{prog}: error: {environment_message(exc)}", file=sys.stderr)
        return 2


def environment_message(exc: BaseException) -> str:
    """One line for a fault of the environment: disk full, read-only output, object-store errors."""
    import errno

    text = " ".join(str(exc).split())
    code = getattr(exc, "errno", None)
    if code == errno.ENOSPC:
        return (f"no space left on the device ({text}); free space or choose another output, then re-run the same "
                f"command: completed shards and checkpoints are kept")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM) or isinstance(exc, PermissionError):
        return f"cannot write there ({text}): a read-only or foreign folder; choose another output"
    if isinstance(exc, RecursionError):
        return "an input is nested too deeply to parse (a malformed JSON file?)"
    if "AWS Error" in text or "S3" in text:
        return (f"object storage: {text[:500]} (check the bucket name, the credentials (AWS_ACCESS_KEY_ID, ...) "
                f"and the endpoint; re-run the same command to continue)")
    return f"{type(exc).__name__}: {text[:500]}"
