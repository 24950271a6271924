"""Issue #24 item 8: a cluster whose CPUs another job holds does not hang an actor-pool job.

The totals fit (the pre-check passes), but no CPU is free: Ray Data's ``wait_for_min_actors_s``,
set from the job's ``resource_wait_s``, bounds the wait, and the timeout is one ResourceError
naming the free and total CPUs."""

from __future__ import annotations

import time

import pytest

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.common.resources import ResourceError
from pipelines.pseudo_masks.config import PseudoMaskJobConfig
from pipelines.pseudo_masks.job import run_pseudo_masks
from vloss.teacher import TeacherConfig

pytestmark = pytest.mark.slow


def test_an_actor_pool_job_on_busy_cpus_fails_in_bounded_time(ray_session, synthetic_source, tmp_path):
    ray = ray_session

    @ray.remote
    def hold(seconds: float) -> None:
        time.sleep(seconds)

    total = ray.cluster_resources()["CPU"]
    blocker = hold.options(num_cpus=total).remote(300)  # another job holding every CPU
    try:
        deadline = time.time() + 60
        while ray.available_resources().get("CPU", 0) > 0 and time.time() < deadline:
            time.sleep(0.2)
        assert ray.available_resources().get("CPU", 0) == 0
        cfg = PseudoMaskJobConfig(annotations=str(synthetic_source.annotations), images=str(synthetic_source.images),
                                  out=str(tmp_path / "out"), teacher=TeacherConfig(backend="box"),
                                  pool=ActorPoolConfig(resource_wait_s=3))
        t0 = time.time()
        with pytest.raises(ResourceError, match=r"did not start within 3 s; the cluster has 0 of 2 CPUs"):
            run_pseudo_masks(cfg)
        assert time.time() - t0 < 60
    finally:
        ray.cancel(blocker, force=True)
    deadline = time.time() + 60  # the CPUs come back for the tests after this one
    while ray.available_resources().get("CPU", 0) < total and time.time() < deadline:
        time.sleep(0.2)
