"""The errors a job reports as one line (what the user can fix), and how the entry points report them.

Bad input (``ValueError`` and its kinds: :class:`~vloss.data.errors.DataFormatError`, weights that do
not fit, unknown ``--set`` keys), a missing file, and :class:`JobError` (a job that cannot finish:
resources the cluster lacks, every image failing) end a job with ``PROG: error: MESSAGE`` on stderr
and exit status 2. Anything else is a bug and keeps its traceback; ``--verbose`` keeps the traceback
of every error.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable


class JobError(RuntimeError):
    """A job cannot finish for a reason the user can act on (the message says which)."""


class StoppedBySignal(Exception):
    """A job stopped cleanly on SIGTERM after saving its work: ``PROG: MESSAGE`` and exit status 143."""


USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, JobError)
SIGTERM_EXIT = 128 + signal.SIGTERM  # 143, what a shell and Kubernetes expect from a SIGTERM'd process


_PROG = {"name": ""}


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (a scheduler, Kubernetes, ``kill``): one line, exit 143, now.

    Raising an exception from the handler is not safe here: Ray's blocking calls check signals
    from inside C code, and an exception raised there surfaced as ``SystemError: ... returned a
    result with an exception set`` (seen in the drill). Nothing is lost by leaving at once:
    shards and checkpoints are committed atomically, the embedded Ray's processes end with the
    driver, a partial checkpoint folder is removed by the re-run, the output lock's holder is
    seen dead and taken over, and the step in flight is trained again from the latest checkpoint.
    """
    prog = _PROG["name"] or os.path.basename(sys.argv[0] or "job")
    try:
        sys.stdout.flush()
        sys.stderr.write(f"{prog}: stopped by SIGTERM; what was complete is kept (finished shards, the latest "
                         f"checkpoint): re-run the same command to continue\n")
        sys.stderr.flush()
    finally:
        os._exit(SIGTERM_EXIT)


def install_sigterm() -> None:
    """Handle SIGTERM with :func:`_on_sigterm` in the main thread (no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def report_errors(prog: str, fn: Callable[[], int], verbose: bool = False) -> int:
    """Run ``fn``; a user error becomes one line on stderr and exit status 2.

    Args:
        prog: the command's name (``python -m jobs.train``).
        fn: the job's body, returning its exit status.
        verbose: let the error propagate with its traceback.
    """
    _PROG["name"] = prog
    install_sigterm()
    try:
        return fn()
    except StoppedBySignal as exc:
        sys.stdout.flush()
        print(f"{prog}: {exc}", file=sys.stderr)
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
