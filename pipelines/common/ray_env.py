"""Connecting to Ray, the same way for every job, and keeping Ray's own output off the console.

By default a job's console shows only its own lines (one progress line per stage, a metrics line
every few steps, the results). Ray's progress bars and its driver log go to
``LOG_DIR/ray_driver.log``, the workers' output stays in Ray's session logs (linked as
``LOG_DIR/ray_session``), and worker lines are not forwarded to the driver (so nothing is printed
twice). ``--verbose`` (``configure_output(verbose=True)``) brings all of it back.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from pipelines.common.errors import install_sigterm


@dataclass
class _Output:
    verbose: bool = False
    log_dir: str | None = None


_OUTPUT = _Output()
_STARTED_LOCALLY = {"value": False}
DRIVER_LOG = "ray_driver.log"
SESSION_LINK = "ray_session"


def configure_output(verbose: bool = False, log_dir: str | None = None) -> None:
    """Choose where Ray's output goes for this process (call before :func:`ensure_ray`).

    Args:
        verbose: show Ray's progress bars, logs and worker output on the console.
        log_dir: a local folder for Ray's driver log and a link to its session logs (None: the
            driver log is dropped below WARNING, worker output stays in Ray's session folder).
    """
    _OUTPUT.verbose = verbose
    _OUTPUT.log_dir = os.path.abspath(log_dir) if log_dir else None
    _quiet_ray_logging()


def log_locations() -> str:
    """Where Ray's output went, in one line for the console."""
    if _OUTPUT.verbose:
        return "Ray output shown on the console (--verbose)"
    if _OUTPUT.log_dir:
        return (f"Ray logs: {os.path.join(_OUTPUT.log_dir, DRIVER_LOG)} (driver), "
                f"{os.path.join(_OUTPUT.log_dir, SESSION_LINK)}/logs (workers); --verbose shows them")
    return "Ray logs: Ray's session folder (/tmp/ray/session_latest/logs); --verbose shows them"


def _quiet_ray_logging() -> None:
    """Send the ``ray*`` loggers to the driver log file instead of the console (unless verbose)."""
    if _OUTPUT.verbose:
        return
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    file_handler = None
    if _OUTPUT.log_dir:
        os.makedirs(_OUTPUT.log_dir, exist_ok=True)
        path = os.path.join(_OUTPUT.log_dir, DRIVER_LOG)
        file_handler = logging.FileHandler(path)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if name.split(".")[0] != "ray" or not isinstance(logger, logging.Logger):
            continue
        for h in logger.handlers:
            if not isinstance(h, logging.FileHandler):
                h.setLevel(logging.ERROR)
        if file_handler is not None and name == "ray" and \
                not any(getattr(h, "baseFilename", None) == file_handler.baseFilename for h in logger.handlers):
            logger.addHandler(file_handler)


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect to Ray once per process.

    Inside ``ray job submit`` or on a cluster (``RAY_ADDRESS`` set) this is a bare
    ``ray.init()``; otherwise an embedded local Ray with ``num_cpus`` CPUs and no dashboard
    (nothing listens beyond what the jobs need). Later calls do nothing.
    """
    import ray

    if ray.is_initialized():
        return
    _quiet_ray_logging()
    kwargs = {"log_to_driver": _OUTPUT.verbose}
    if os.environ.get("RAY_ADDRESS"):
        context = ray.init(**kwargs)
    else:
        context = ray.init(num_cpus=num_cpus, include_dashboard=False, **kwargs)
        _STARTED_LOCALLY["value"] = True
    _quiet_ray_logging()  # Ray configures its loggers during init
    install_sigterm()  # after ray.init, which sets its own (exit from deep inside a blocking call)
    if _OUTPUT.log_dir and not _OUTPUT.verbose:
        _link_session_logs(_OUTPUT.log_dir, getattr(context, "address_info", {}).get("session_dir"))


def started_locally() -> bool:
    """Whether this process started the embedded local Ray (a fixed cluster: nothing will be added)."""
    return _STARTED_LOCALLY["value"]


def _link_session_logs(log_dir: str, session: str | None) -> None:
    """``LOG_DIR/ray_session`` -> this Ray session's folder (worker logs), on the driver's node.

    Args:
        log_dir: the job's log folder.
        session: the session folder, from ``ray.init()``'s context (``address_info["session_dir"]``;
            None for a client connection, which has no local session folder).
    """
    if not session:
        return
    link = os.path.join(log_dir, SESSION_LINK)
    if os.path.islink(link):
        os.unlink(link)
    if not os.path.exists(link):
        os.symlink(session, link)
