"""Why a training run stopped, in one message: lost capacity, a worker error, the retries Ray Train
makes, and what to do next."""

from __future__ import annotations

import os

from pipelines.common.errors import JobError
from pipelines.common.storage import locate
from pipelines.train.config import ClusterConfig


class TrainingStoppedError(JobError):
    """Ray Train gave up (a worker or node lost beyond ``max_failures``, or no room to restart)."""


def restart_attempts(cluster: ClusterConfig) -> int:
    """How often Ray Train may try again to place the worker group after losing a worker or node.

    Each try waits ``RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S`` (Ray's default 60 s) for the
    resources; Ray's own default is to try forever, which on a fixed cluster that lost a node is
    a hang. We try for about ``cluster.resource_wait_s`` (300 s on a joined cluster, whose
    autoscaler may replace the node; 0 on the embedded Ray), then stop with
    :class:`TrainingStoppedError`.
    """
    from pipelines.common.ray_env import started_locally
    from pipelines.common.resources import default_wait_s

    wait = cluster.resource_wait_s if cluster.resource_wait_s is not None else default_wait_s(started_locally())
    per_try = float(os.environ.get("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", 60.0))
    return int(wait // per_try) if per_try > 0 else 0


def failure_cause(exc: BaseException) -> tuple[str, bool]:
    """The cause of a stopped Ray Train run in one line, and whether it was a lost worker or node.

    Ray Train's own message is a per-rank traceback snippet whose first line is empty when the
    traceback is long (the bare ``[Rank 0 Error Snippet]:.`` users saw); the worker's exception
    itself is in ``worker_failures`` (or ``controller_failure``), wrapped with its traceback text.
    """
    failures = getattr(exc, "worker_failures", None) or {}
    if failures:
        rank, err = sorted(failures.items(), key=lambda kv: kv[0])[0]
        where = f"rank {rank}"
    else:
        err, where = getattr(exc, "controller_failure", None) or exc, "the Ray Train controller"
    seen: set[int] = set()
    while id(err) not in seen:  # unwrap Ray's wrappers to the exception the user's code raised
        seen.add(id(err))
        inner = getattr(err, "_base_exc", None) or getattr(err, "cause", None) or err.__cause__
        if not isinstance(inner, BaseException):
            break
        err = inner
    name = type(err).__name__
    lost = any(k in name or k in str(err) for k in ("HealthCheck", "ActorDied", "NodeDied", "WorkerCrashed",
                                                    "ActorUnavailable", "OutOfMemory", "Preemption",
                                                    "WorkerGroupStartupTimeout"))
    text = " ".join(str(err).split()) or "(no message)"
    if text.startswith("Traceback"):  # a bare traceback string: its last line names the exception
        text = str(err).strip().splitlines()[-1]
        name = ""
    return f"{where}: {name + ': ' if name else ''}{text[:600]}", lost


def stopped_message(exc: BaseException, cluster: ClusterConfig, store: str) -> str:
    """What a stopped run tells the user: the worker's exception in one line and how to continue."""
    cause, lost = failure_cause(exc)
    ckpts = locate(store).child("ray_train").uri
    if lost:
        needs = f"{cluster.workers} workers x {cluster.cpus_per_worker:g} CPU" + (
            f" x {cluster.gpus_per_worker:g} GPU" if cluster.gpus_per_worker else "")
        return (f"training stopped: {cause}. The checkpoints so far are under {ckpts}; once the cluster can place "
                f"{needs} again (a lost node back), re-run the same command to continue from the latest one; "
                f"the same run also continues on fewer workers (--workers N, or --workers MIN:MAX to shrink and "
                f"grow with the cluster).")
    return (f"training stopped: {cause}. The checkpoints so far are under {ckpts}; after fixing the cause, re-run "
            f"the same command to continue from the latest one.")
