"""The check that every path a job's Ray tasks, actors or workers touch is reachable from every node.

On one machine a local path works wherever a task runs. On a cluster whose nodes share nothing
but object storage, a task placed on another node would find nothing there (or, worse, write
its checkpoint to that node's own disk). Before any work is submitted, a job on a cluster of
more than one node refuses local paths for what runs outside the driver, naming each, unless the
user says they are a mount every node shares at the same path (``shared_fs``). Paths only the
driver reads or writes (an evaluation's ground truth and report, the pseudo-mask output) are not
checked: the driver mirrors or publishes them (:mod:`pipelines.common.remote`).
"""

from __future__ import annotations

from pipelines.common.errors import JobError
from pipelines.common.remote import is_remote


class NotSharedError(JobError):
    """A multi-node job was given a local path that tasks on other nodes would read or write."""


def alive_nodes() -> int:
    """Nodes of the connected Ray cluster that are alive."""
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))


def check_shared(paths: dict[str, str | None], job: str, shared_fs: bool, flag: str) -> None:
    """Raise :class:`NotSharedError` if the cluster has several nodes and one of ``paths`` is local.

    Args:
        paths: what each path is (``"--images"``) -> the path or URI (None: not used).
        job: the job in words (``"the training job"``).
        shared_fs: the user's word that local paths are a mount shared by every node.
        flag: how to give that word (``"--set shared_fs=true"``).
    """
    if shared_fs:
        return
    local = {k: v for k, v in paths.items() if v is not None and not is_remote(v)}
    if not local:
        return
    nodes = alive_nodes()
    if nodes <= 1:
        return
    named = "; ".join(f"{k} {v}" for k, v in local.items())
    raise NotSharedError(f"{job} runs on a Ray cluster of {nodes} nodes, but its tasks on other nodes would read or "
                         f"write local paths that only one machine has: {named}. Put them on object storage "
                         f"(s3://..., gs://...; for training checkpoints --storage-path), or, if they lie on a "
                         f"mount that every node shares at the same path, say so with {flag}.")
