"""Train VLOSS with Ray Train.

On a cluster (the paper's recipe; refuses to start without the pretrained weights)::

    ray job submit --working-dir . -- python -m jobs.train --recipe t1_vloss --data DATA_ROOT \\
        --pseudo-masks s3://bucket/o365_pseudo --workers 8 --gpus-per-worker 1 \\
        --set model.backbone.weights=/weights/swin_tiny_patch4_window7_224.safetensors \\
        --set model.text.weights=/weights/open_clip_vit_b32_openai.bin \\
        --storage-path s3://bucket/vloss-runs --out runs/vloss

Plan it first, without data or GPUs (writes RUN/plan.json, starts nothing)::

    python -m jobs.train --recipe t1_vloss --workers 8 --sizes paper --dry-run --from-scratch --img-per-s 40

On one machine (embedded local Ray, synthetic world, ``tiny`` network)::

    python -m jobs.train --out runs/trial --set train.max_steps=6

Every field of the recipe (:class:`vloss.config.TrainJobConfig`) is reachable with ``--set``
(``train.schedule=mix``, ``train.epochs=6``, ``optim.base_lr=1e-4``, ``model.decoder.num_layers=6``),
and so is the cluster section (``cluster.max_failures=3``, ``cluster.cpus_per_worker=8``,
``cluster.rows_per_shard=512``). ``--list-recipes`` prints the paper's table rows; the resolved
config goes to ``OUT/config.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines.common.cli import add_set_argument, add_verbose_argument, settings_error, setup_output, split_overrides
from pipelines.common.errors import report_errors
from pipelines.common.resources import default_cpus
from pipelines.train.config import ClusterConfig
from vloss.config import TrainJobConfig, resolve
from vloss.config_io import apply_overrides
from vloss.recipes import RECIPES, build_recipe, recipe_table


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, TrainJobConfig | None, ClusterConfig]:
    """Flags, the resolved recipe (None with --list-recipes) and the cluster section."""
    p = argparse.ArgumentParser(prog="python -m jobs.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", default=None, choices=list(RECIPES), metavar="NAME",
                   help="a row of the paper's tables (see --list-recipes)")
    p.add_argument("--list-recipes", action="store_true", help="print the recipes and exit")
    p.add_argument("--config", default=None, choices=["paper", "baseline", "tiny"],
                   help="network preset (default: the recipe's; tiny without --data; paper with it)")
    p.add_argument("--data", default=None, help="data root in the layouts of docs/DATA_LAYOUT.md, or a "
                                                "sources file naming your own files (docs/CUSTOM_DATA.md); "
                                                "default: generate the synthetic world")
    p.add_argument("--shards", default=None, help="existing training-shard root (skips data preparation)")
    p.add_argument("--pseudo-masks", default=None, help="output dir of python -m jobs.pseudo_masks for the boxes")
    p.add_argument("--extra-image-text", action="store_true",
                   help="also train L_con on the data root's extra image-text pairs (image_text/), besides COCO "
                        "Captions; no recipe of the paper does")
    p.add_argument("--box-masks", action="store_true",
                   help="train detection on filled boxes instead of pseudo masks (the weak baseline of Sec. 3.2)")
    p.add_argument("--from-scratch", action="store_true",
                   help="train without the pretrained Swin-T / CLIP text weights the paper starts from")
    p.add_argument("--out", default="runs/vloss", help="run directory (config, plan, metrics, results)")
    p.add_argument("--workers", type=worker_range, default=(0, 2), metavar="N|MIN:MAX",
                   help="Ray Train workers (default 2); MIN:MAX: elastic, continues on the workers left when a node "
                        "goes and grows back when it returns, with the same global batch and data order")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="a worker holding a GPU trains on CUDA")
    p.add_argument("--storage-path", default=None, help="Ray Train checkpoint storage (shared dir or s3://...)")
    p.add_argument("--resume", default="auto",
                   help="auto (default): re-running the same command on its --out continues from the latest "
                        "checkpoint, also after the driver was killed; none: refuse to continue; or a checkpoint "
                        "directory to start a new --out from")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an --out (and its shards) that holds another run, instead of refusing")
    p.add_argument("--dry-run", action="store_true", help="resolve everything, write OUT/plan.json, train nothing")
    p.add_argument("--sizes", default=None, choices=["paper"],
                   help="with --dry-run: plan for the paper's dataset sizes (no data needed)")
    p.add_argument("--img-per-s", type=float, default=None,
                   help="with --dry-run: measured dense images/s of the cluster, for a wall-time estimate")
    add_set_argument(p, "train.schedule=mix", lambda: {"": TrainJobConfig, "cluster.": ClusterConfig},
                     note="defaults of the configs; --config/--recipe set some of them (--dry-run shows a run's)")
    add_verbose_argument(p)
    a = p.parse_args(argv)
    routed, recipe_overrides = split_overrides(a.overrides, ["cluster"])
    cluster = ClusterConfig(workers=a.workers[1], min_workers=a.workers[0], gpus_per_worker=a.gpus_per_worker,
                            cpus_per_worker=default_cpus(a.gpus_per_worker), storage_path=a.storage_path)
    if a.list_recipes:
        return a, None, cluster
    try:
        if a.recipe:
            job = build_recipe(a.recipe, a.config, recipe_overrides)
            preset = a.config or RECIPES[a.recipe].network
        else:
            preset = a.config or ("tiny" if a.data is None and a.shards is None else "paper")
            job = resolve(preset, recipe_overrides)
        a.preset_line = (f"[train] {'recipe ' + a.recipe + ', ' if a.recipe else ''}network preset {preset} ("
                         + ("--config" if a.config else "the recipe's network" if a.recipe else
                            "no --data: the synthetic world" if preset == "tiny" else "--data/--shards given")
                         + "; --config tiny|paper|baseline chooses)")
        apply_overrides(cluster, routed["cluster"], default_section=None, prefix="cluster.")
    except ValueError as exc:
        settings_error(p, exc)
    if a.from_scratch:
        job.train.require_pretrained = False  # recorded in the resolved config
    if job.train.max_steps and preset == "tiny" and a.data is None and a.shards is None:
        # a short trial on the synthetic world: two steps per dense sub-epoch, so that a
        # handful of steps visits detection, captions and panoptic
        trial_rows = 2 * job.train.dense_batch_size
        job.train.detection_images = job.train.detection_images or trial_rows
        job.train.panoptic_images = job.train.panoptic_images or trial_rows
    return a, job, cluster


def worker_range(text: str) -> tuple[int, int]:
    """``--workers``: ``N`` (a fixed group: ``(0, N)``) or ``MIN:MAX`` (elastic: ``(MIN, MAX)``)."""
    try:
        lo, _, hi = text.partition(":")
        pair = (0, int(lo)) if not _ else (int(lo), int(hi))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN:MAX (integers), got {text!r}") from None
    if pair[1] < 1 or (_ and not 1 <= pair[0] <= pair[1]):
        raise argparse.ArgumentTypeError(f"expected N >= 1 or 1 <= MIN <= MAX, got {text!r}")
    return pair


def dry_run(a: argparse.Namespace, job: TrainJobConfig, cluster: ClusterConfig, weights: list[dict], out: str) -> int:
    """Resolve sizes, batches, steps and milestones; write OUT/plan.json; train nothing."""
    from pipelines.train.data_prep import synthetic_world
    from pipelines.train.plan import dataset_sizes, format_plan, make_plan, write_plan

    if a.sizes:
        sizes, source = dataset_sizes(job, sizes=a.sizes), f"--sizes {a.sizes}"
    elif a.shards:
        sizes, source = dataset_sizes(job, shard_root=a.shards), a.shards
    else:
        root = a.data or synthetic_world(out, job.seed)
        sizes, source = dataset_sizes(job, data_root=root, pseudo_masks=a.pseudo_masks,
                                      extra_image_text=a.extra_image_text), root
        source += " (captions: COCO Captions" + (" + image_text/)" if a.extra_image_text else ")")
    plan = make_plan(job, cluster, sizes, weights, a.img_per_s, source)
    path = write_plan(plan, out)
    print(format_plan(plan))
    print(f"[plan] written to {path}; nothing was trained")
    return 0


def main(argv: list[str] | None = None) -> int:
    a, job, cluster = parse_args(argv)
    if job is None:
        print(recipe_table())
        return 0
    return report_errors("python -m jobs.train", lambda: _run(a, job, cluster), a.verbose)


def _run(a: argparse.Namespace, job: TrainJobConfig, cluster: ClusterConfig) -> int:
    from pipelines.common.storage import locate
    from pipelines.train.preflight import check_run

    resume_from = None if a.resume in ("auto", "none") else a.resume
    out = os.path.abspath(a.out)
    print(a.preset_line, flush=True)
    # every check of the launch, before Ray and before anything is written; all failures in one message
    pre = check_run(job, cluster, out=out, data=a.data, shards=a.shards, pseudo_masks=a.pseudo_masks,
                    box_masks=a.box_masks, from_scratch=a.from_scratch, resume_from=resume_from,
                    extra_image_text=a.extra_image_text, sizes_only=bool(a.dry_run and a.sizes))
    pre.raise_if_failed()
    weights = pre.weights
    if a.dry_run:
        return dry_run(a, job, cluster, weights, out)
    from pipelines.common.ray_env import ensure_ray, log_locations
    from pipelines.common.shared_paths import check_shared
    from pipelines.train.data_prep import prepare_shards
    from pipelines.train.job import check_cluster, run_training
    from pipelines.train.run_dir import checkpoint_uri, run_store

    setup_output(out, a.verbose)
    ensure_ray()
    check_cluster(cluster)  # before any shard is built
    # shards the job builds go where every node reads them: the run's storage
    work = run_store(out, cluster)
    check_shared({"--data": a.data, "--pseudo-masks": a.pseudo_masks, "--shards": a.shards,
                  "the run's storage (--storage-path; the run directory without it)": work},
                 "the training job", cluster.shared_fs, "--set cluster.shared_fs=true")
    if a.shards:
        shard_root = a.shards
    elif a.data is None:  # the synthetic-world trial: filled boxes unless pseudo masks are given
        shard_root = prepare_shards(None, work, a.pseudo_masks, cluster.rows_per_shard, job.seed,
                                    box_masks=True if a.box_masks or a.pseudo_masks is None else None,
                                    tasks=job.train.tasks_used(), overwrite=a.overwrite,
                                    extra_image_text=a.extra_image_text)
    else:
        shard_root = prepare_shards(a.data, locate(work).child("data").uri, a.pseudo_masks, cluster.rows_per_shard,
                                    job.seed, box_masks=a.box_masks, tasks=job.train.tasks_used(),
                                    overwrite=a.overwrite, extra_image_text=a.extra_image_text)
    result = run_training(job, shard_root, out, cluster, resume_from=resume_from, overwrite=a.overwrite,
                          resume="none" if a.resume == "none" else "auto")
    print(f"[train] run directory: {out}")
    if result is not None:
        print(f"[train] last checkpoint: {checkpoint_uri(result.checkpoint)}")
    print(f"[train] {log_locations()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
