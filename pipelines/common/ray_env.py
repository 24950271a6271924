"""Connecting to Ray, the same way for every job."""

from __future__ import annotations

import os


def ensure_ray(num_cpus: int | None = None) -> None:
    """Connect to Ray once per process.

    Inside ``ray job submit`` or on a cluster (``RAY_ADDRESS`` set) this is a bare
    ``ray.init()``; otherwise an embedded local Ray with ``num_cpus`` CPUs and no dashboard
    (nothing listens beyond what the jobs need). Later calls do nothing.
    """
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False)
