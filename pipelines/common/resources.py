"""Resource defaults, the rule that the device follows the resources, and the check that a job fits.

An actor or worker that reserves a GPU runs on CUDA; one that does not runs on the CPU. Ray
hides the GPUs an actor did not reserve (``CUDA_VISIBLE_DEVICES``), so this rule and the
reservation can never disagree.

A job that asks for more than the cluster has would wait forever (Ray Data's actor pool and Ray
Train's worker group block until every actor is placed). :func:`check_fits` compares what a job
needs at once with the cluster before any work is submitted: on a fixed cluster (the embedded
local Ray) an over-request is an immediate error naming both; on a cluster joined through
``RAY_ADDRESS``, whose autoscaler may still add nodes, it waits a bounded time
(``resource_wait_s``) and then raises the same error.
"""

from __future__ import annotations

import time

from pipelines.common.errors import JobError

# logical CPUs a GPU actor/worker reserves (data feeding, post-processing); CPU ones reserve a
# fraction so that Ray Data's decode tasks still get scheduled on a 2-core machine
CPUS_WITH_GPU = 4.0
CPUS_WITHOUT_GPU = 0.5


def device_for(gpus: float) -> str:
    """``"cuda"`` when ``gpus`` > 0, else ``"cpu"``.

    Args:
        gpus: GPUs the actor or worker reserves.
    """
    return "cuda" if gpus > 0 else "cpu"


def default_cpus(gpus: float) -> float:
    """CPUs an actor or worker reserves by default, given its GPUs."""
    return CPUS_WITH_GPU if gpus > 0 else CPUS_WITHOUT_GPU


class ResourceError(JobError):
    """A job asks for more CPUs or GPUs than the cluster has (or gets within the wait)."""


def default_wait_s(started_locally: bool) -> float:
    """How long to wait for resources: 0 on the embedded local Ray, 300 s on a joined cluster."""
    return 0.0 if started_locally else 300.0


def check_fits(needs: dict[str, float], what: str, wait_s: float | None = None, poll_s: float = 2.0) -> None:
    """Raise :class:`ResourceError` unless the cluster has ``needs`` (within ``wait_s`` seconds).

    Args:
        needs: resource -> amount the job needs at once (``{"CPU": 2.25, "GPU": 8}``).
        what: the request in words (``"4 teacher actors x 0.5 CPU + a 0.25-CPU decode task"``).
        wait_s: seconds to wait for an autoscaler (None: :func:`default_wait_s` for this Ray).
        poll_s: seconds between looks at the cluster.
    """
    import ray

    from pipelines.common.ray_env import started_locally

    if wait_s is None:
        wait_s = default_wait_s(started_locally())
    deadline = time.monotonic() + wait_s
    while True:
        have = ray.cluster_resources()
        short = {k: (v, float(have.get(k, 0.0))) for k, v in needs.items() if v > 0 and have.get(k, 0.0) + 1e-9 < v}
        if not short:
            return
        if time.monotonic() >= deadline:
            asked = ", ".join(f"{v:g} {k}" for k, (v, _) in short.items())
            exists = ", ".join(f"{h:g} {k}" for k, (_, h) in short.items())
            waited = f" after waiting {wait_s:g} s for the autoscaler" if wait_s > 0 else ""
            raise ResourceError(f"{what} needs {asked} at once, but the cluster has {exists}{waited}; "
                                f"ask for fewer actors/workers or GPUs, or add nodes")
        time.sleep(poll_s)
