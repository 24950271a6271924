"""A training launch as the command line asks for it: the recipe resolved, every check once, then a
plan (``--dry-run``) or the shards and the run.

``python -m jobs.train`` only parses its flags into a :class:`TrainLaunch` and calls
:func:`resolve_job` and :func:`launch_training`; the policy of a launch lives here:

- which network preset a run gets (the recipe's, ``tiny`` on the synthetic world, ``paper`` with
  data) and the short synthetic trial's dataset cut;
- ``--resume auto|none|PATH``, decoded once (:attr:`TrainLaunch.resume_mode`, :attr:`TrainLaunch.resume_from`);
- whether detection trains on filled boxes (:attr:`TrainLaunch.box_masks_for_run`);
- the order of the checks: everything that needs no Ray (:func:`pipelines.train.preflight.check_run`),
  then the cluster (Ray, the workers' fit, the paths every node must reach), each once, before any
  shard is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from pipelines.train.config import ClusterConfig
from vloss.config import TrainJobConfig


@dataclass
class TrainLaunch:
    """What a launch was asked for besides the recipe and the cluster (``jobs.train``'s flags).

    Args:
        out: the run directory.
        data: a data root (``docs/DATA_LAYOUT.md``) or a sources file (``docs/CUSTOM_DATA.md``); None
            with ``shards`` None: the generated synthetic world.
        shards: built training shards (skips data preparation).
        pseudo_masks: the pseudo-mask job's output for the detection boxes.
        extra_image_text: also train ``L_con`` on the data root's ``image_text/`` pairs.
        box_masks: train detection on filled boxes (the weak baseline of Sec. 3.2).
        from_scratch: train without the pretrained towers.
        resume: ``auto`` (a re-run continues its run), ``none`` (refuse to continue) or a
            checkpoint directory to start a new run from.
        overwrite: replace a run directory (and its shards) of another run.
        dry_run: write the plan, train nothing.
        sizes: with ``dry_run``: ``paper`` plans for the paper's dataset sizes.
        img_per_s: with ``dry_run``: measured dense images/s, for a wall-time estimate.
        verbose: Ray's own output on the terminal instead of the log folder.
    """

    out: str
    data: str | None = None
    shards: str | None = None
    pseudo_masks: str | None = None
    extra_image_text: bool = False
    box_masks: bool = False
    from_scratch: bool = False
    resume: str = "auto"
    overwrite: bool = False
    dry_run: bool = False
    sizes: str | None = None
    img_per_s: float | None = None
    verbose: bool = False

    @property
    def synthetic(self) -> bool:
        """The run trains on the generated synthetic world (no ``data``, no ``shards``)."""
        return self.data is None and self.shards is None

    @property
    def resume_mode(self) -> str:
        """``auto`` or ``none`` (a checkpoint path starts a new run: ``auto`` for its directory)."""
        return "none" if self.resume == "none" else "auto"

    @property
    def resume_from(self) -> str | None:
        """The checkpoint directory given to ``--resume``, else None."""
        return None if self.resume in ("auto", "none") else self.resume

    @property
    def box_masks_for_run(self) -> bool:
        """Detection on filled boxes: when asked, and on the synthetic world unless pseudo masks are given."""
        return self.box_masks or (self.synthetic and self.pseudo_masks is None)


def resolve_job(recipe: str | None, config: str | None, overrides: list[str],
                launch: TrainLaunch) -> tuple[TrainJobConfig, str]:
    """The run's resolved config and the line saying which network preset it got and why.

    Args:
        recipe: a name of :data:`vloss.recipes.RECIPES`, or None.
        config: ``--config`` (``tiny|paper|baseline``), or None: the recipe's network; else ``tiny``
            on the synthetic world and ``paper`` with data.
        overrides: ``key=value`` settings of the recipe.
        launch: the rest of the launch.

    Raises:
        ValueError: an unknown setting or a bad value.
    """
    from vloss.config import resolve
    from vloss.recipes import RECIPES, build_recipe

    if recipe:
        job = build_recipe(recipe, config, overrides)
        preset = config or RECIPES[recipe].network
    else:
        preset = config or ("tiny" if launch.synthetic else "paper")
        job = resolve(preset, overrides)
    why = ("--config" if config else "the recipe's network" if recipe else
           "no --data: the synthetic world" if preset == "tiny" else "--data/--shards given")
    line = (f"[train] {'recipe ' + recipe + ', ' if recipe else ''}network preset {preset} ({why}; "
            f"--config tiny|paper|baseline chooses)")
    if launch.from_scratch:
        job.train.require_pretrained = False  # recorded in the resolved config
    if job.train.max_steps and preset == "tiny" and launch.synthetic:
        # a short trial on the synthetic world: two steps per dense sub-epoch, so that a
        # handful of steps visits detection, captions and panoptic
        trial_rows = 2 * job.train.dense_batch_size
        job.train.detection_images = job.train.detection_images or trial_rows
        job.train.panoptic_images = job.train.panoptic_images or trial_rows
    return job, line


def launch_training(job: TrainJobConfig, cluster: ClusterConfig, launch: TrainLaunch) -> int:
    """Check everything, then write the plan (``dry_run``) or build the shards and train; returns 0.

    Raises:
        PreflightError: every problem found before Ray, in one message.
        ResourceError / NotSharedError: the cluster cannot run it.
        TrainingStoppedError / StoppedBySignal: the run stopped (its checkpoint kept).
    """
    from pipelines.train.preflight import check_run

    out = os.path.abspath(launch.out)
    pre = check_run(job, cluster, out=out, data=launch.data, shards=launch.shards, pseudo_masks=launch.pseudo_masks,
                    box_masks=launch.box_masks, from_scratch=launch.from_scratch, resume_from=launch.resume_from,
                    extra_image_text=launch.extra_image_text, sizes_only=bool(launch.dry_run and launch.sizes))
    pre.raise_if_failed()  # every check that needs no Ray, before anything is written; all in one message
    if launch.dry_run:
        return plan_launch(job, cluster, launch, pre.weights, out)
    from pipelines.common.cli import setup_output
    from pipelines.common.ray_env import log_locations
    from pipelines.common.storage import locate
    from pipelines.train.data_prep import prepare_shards
    from pipelines.train.job import fit, start_cluster
    from pipelines.train.run_dir import checkpoint_uri

    setup_output(out, launch.verbose)
    # the cluster, once, before any shard is built; shards the job builds go where every node
    # reads them: the run's storage
    work = start_cluster(cluster, out, {"--data": launch.data, "--pseudo-masks": launch.pseudo_masks,
                                        "--shards": launch.shards, "--resume": launch.resume_from})
    if launch.shards:
        shard_root = launch.shards
    else:
        shard_root = prepare_shards(launch.data, work if launch.synthetic else locate(work).child("data").uri,
                                    launch.pseudo_masks, cluster.rows_per_shard, job.seed,
                                    box_masks=launch.box_masks_for_run, tasks=job.train.tasks_used(),
                                    overwrite=launch.overwrite, extra_image_text=launch.extra_image_text)
    result = fit(job, shard_root, out, cluster, resume_from=launch.resume_from, overwrite=launch.overwrite,
                 resume=launch.resume_mode)
    print(f"[train] run directory: {out}")
    if result is not None:
        print(f"[train] last checkpoint: {checkpoint_uri(result.checkpoint)}")
    print(f"[train] {log_locations()}")
    return 0


def plan_launch(job: TrainJobConfig, cluster: ClusterConfig, launch: TrainLaunch, weights: list[dict[str, Any]],
                out: str) -> int:
    """Resolve sizes, batches, steps and milestones; write ``OUT/plan.json``; train nothing."""
    from pipelines.train.data_prep import synthetic_world
    from pipelines.train.plan import dataset_sizes, format_plan, make_plan, write_plan

    if launch.sizes:
        sizes, source = dataset_sizes(job, sizes=launch.sizes), f"--sizes {launch.sizes}"
    elif launch.shards:
        sizes, source = dataset_sizes(job, shard_root=launch.shards), launch.shards
    else:
        root = launch.data or synthetic_world(out, job.seed)
        sizes, source = dataset_sizes(job, data_root=root, pseudo_masks=launch.pseudo_masks,
                                      extra_image_text=launch.extra_image_text), root
        source += " (captions: COCO Captions" + (" + image_text/)" if launch.extra_image_text else ")")
    plan = make_plan(job, cluster, sizes, weights, launch.img_per_s, source)
    path = write_plan(plan, out)
    print(format_plan(plan))
    print(f"[plan] written to {path}; nothing was trained")
    return 0
