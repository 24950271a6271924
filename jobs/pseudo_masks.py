"""Objects365-style boxes -> pseudo masks -> Parquet shards.

On a cluster::

    ray job submit --working-dir . -- python -m jobs.pseudo_masks --annotations A.json --images ROOT \\
        --checkpoint W.pth --out OUT --num-actors 8 --gpus-per-actor 1

With an MMDetection model-zoo teacher (after ``make install-mmdet``)::

    python -m jobs.pseudo_masks --backend mmdet --mmdet-config mask-rcnn_r50_fpn_1x_coco \
        --checkpoint mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth --annotations A.json --images ROOT --out OUT

On one machine it runs on an embedded local Ray. Every setting of
:class:`pipelines.pseudo_masks.config.PseudoMaskJobConfig` is reachable with ``--set``
(``teacher.arch=maskrcnn_resnet50_fpn_v2``, ``rows_per_shard=500``, ``limit=100``,
``strict=true``); the resolved config is written to ``OUT/_config.json``.
"""

from __future__ import annotations

import argparse
import json
import sys

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.common.cli import add_set_argument, add_verbose_argument, settings_error, setup_output
from pipelines.common.errors import report_errors
from pipelines.pseudo_masks.config import PseudoMaskJobConfig
from vloss.config_io import apply_overrides
from vloss.teacher.config import BACKENDS, TeacherConfig


def parse_args(argv: list[str] | None = None) -> tuple[PseudoMaskJobConfig, argparse.Namespace]:
    """The job config (flags + ``--set`` overrides) and the post-run actions."""
    p = argparse.ArgumentParser(prog="python -m jobs.pseudo_masks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--annotations", required=True, help="COCO detection JSON (path or s3:// gs:// file:// URI)")
    p.add_argument("--images", required=True, help="image root (path or URI)")
    p.add_argument("--out", required=True, help="output directory (path or URI)")
    p.add_argument("--checkpoint", help="teacher state dict (.pth), loaded with weights_only=True")
    p.add_argument("--backend", choices=BACKENDS, default="maskrcnn",
                   help="maskrcnn: torchvision Mask R-CNN state dict; mmdet: an MMDetection model-zoo checkpoint "
                        "with --mmdet-config (make install-mmdet); box: filled boxes")
    p.add_argument("--mmdet-config", default=None,
                   help="the mmdet backend's config: a packaged name (mask-rcnn_r50_fpn_1x_coco) or a .yaml/.json "
                        "file (.py with --set teacher.trust_config=true)")
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="an actor holding a GPU runs on CUDA")
    p.add_argument("--sample", type=int, default=None,
                   help="a seeded random subset of N images with boxes (the paper samples ~0.66M of Objects365)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an output directory that holds another plan's shards (refused otherwise)")
    add_set_argument(p, "teacher.arch=maskrcnn_resnet50_fpn_v2", lambda: {"": PseudoMaskJobConfig})
    p.add_argument("--export-coco", help="also write a COCO JSON with RLE segmentations here")
    p.add_argument("--eval-truth", help="COCO JSON with true masks: report mean mask IoU")
    p.add_argument("--num-overlays", type=int, default=4, help="overlays drawn with --eval-truth")
    add_verbose_argument(p)
    a = p.parse_args(argv)
    try:
        config = PseudoMaskJobConfig(annotations=a.annotations, images=a.images, out=a.out, checkpoint=a.checkpoint,
                                     teacher=TeacherConfig(backend=a.backend, mmdet_config=a.mmdet_config),
                                     pool=ActorPoolConfig(num_actors=a.num_actors, gpus_per_actor=a.gpus_per_actor),
                                     sample=a.sample, sample_seed=a.seed,
                                     overwrite=a.overwrite)
        apply_overrides(config, a.overrides, default_section=None)
    except ValueError as exc:
        settings_error(p, exc)
    return config, a


def main(argv: list[str] | None = None) -> int:
    config, a = parse_args(argv)
    return report_errors("python -m jobs.pseudo_masks", lambda: _run(config, a), a.verbose)


def _run(config: PseudoMaskJobConfig, a: argparse.Namespace) -> int:
    from pipelines.common.pseudo_mask_format import export_coco
    from pipelines.common.ray_env import log_locations
    from pipelines.pseudo_masks.job import manifest_summary, run_pseudo_masks  # torch and Ray: not for --help
    from pipelines.pseudo_masks.quality import evaluate_output, format_quality

    setup_output(config.out, a.verbose)
    manifest = run_pseudo_masks(config)
    print(manifest_summary(manifest))
    if a.export_coco:
        coco = export_coco(config.out, a.export_coco)
        print(f"exported {len(coco['annotations'])} annotations to {a.export_coco}")
    if a.eval_truth:
        result = evaluate_output(config.out, a.eval_truth, config.images, a.num_overlays)
        print(format_quality(result))
        print(json.dumps({"mean_iou": result["mean_iou"], "count": result["count"]}))
    print(f"[pseudo-masks] {log_locations()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
