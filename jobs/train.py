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
import sys

from pipelines.common.cli import add_set_argument, add_verbose_argument, settings_error, split_overrides
from pipelines.common.errors import report_errors
from pipelines.common.resources import default_cpus
from pipelines.train.config import ClusterConfig
from pipelines.train.launch import TrainLaunch, launch_training, resolve_job
from vloss.config import TrainJobConfig
from vloss.config_io import apply_overrides
from vloss.recipes import RECIPES, recipe_table


def parse_args(argv: list[str] | None = None
               ) -> tuple[argparse.Namespace, TrainJobConfig | None, ClusterConfig, TrainLaunch]:
    """Flags, the resolved recipe (None with --list-recipes), the cluster section and the launch."""
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
    launch = TrainLaunch(out=a.out, data=a.data, shards=a.shards, pseudo_masks=a.pseudo_masks,
                         extra_image_text=a.extra_image_text, box_masks=a.box_masks, from_scratch=a.from_scratch,
                         resume=a.resume, overwrite=a.overwrite, dry_run=a.dry_run, sizes=a.sizes,
                         img_per_s=a.img_per_s, verbose=a.verbose)
    if a.list_recipes:
        return a, None, cluster, launch
    try:
        job, a.preset_line = resolve_job(a.recipe, a.config, recipe_overrides, launch)
        apply_overrides(cluster, routed["cluster"], default_section=None, prefix="cluster.")
    except ValueError as exc:
        settings_error(p, exc)
    return a, job, cluster, launch


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


def main(argv: list[str] | None = None) -> int:
    a, job, cluster, launch = parse_args(argv)
    if job is None:
        print(recipe_table())
        return 0
    print(a.preset_line, flush=True)
    return report_errors("python -m jobs.train", lambda: launch_training(job, cluster, launch), a.verbose)


if __name__ == "__main__":
    sys.exit(main())
