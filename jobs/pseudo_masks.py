"""Entry point: ``ray job submit -- python jobs/pseudo_masks.py --annotations A.json --images ROOT
--checkpoint W.pth --out OUT/`` (also runs directly, with an embedded local Ray)."""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root for `ray job submit`

from pipelines.pseudo_mask_quality import evaluate_output, format_quality  # noqa: E402
from pipelines.pseudo_mask_shards import export_coco  # noqa: E402
from pipelines.pseudo_masks import PseudoMaskJobConfig, manifest_summary, run_pseudo_masks  # noqa: E402
from vloss.teacher.architectures import TEACHER_ARCHS  # noqa: E402
from vloss.teacher.config import BACKENDS, TeacherConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Objects365-style boxes -> pseudo masks -> Parquet shards")
    p.add_argument("--annotations", required=True, help="COCO detection JSON (path or s3:// gs:// file:// URI)")
    p.add_argument("--images", required=True, help="image root (path or URI)")
    p.add_argument("--out", required=True, help="output directory (path or URI)")
    p.add_argument("--checkpoint", help="teacher state dict (.pth), loaded with weights_only=True")
    p.add_argument("--backend", choices=BACKENDS, default="maskrcnn")
    p.add_argument("--arch", choices=TEACHER_ARCHS, default="maskrcnn_resnet50_fpn")
    p.add_argument("--min-size", type=int, default=800)
    p.add_argument("--max-size", type=int, default=1333)
    p.add_argument("--mask-threshold", type=float, default=0.5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--rows-per-shard", type=int, default=1000)
    p.add_argument("--limit", type=int)
    p.add_argument("--strict", action="store_true", help="an unreadable image aborts the job")
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.add_argument("--cpus-per-actor", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--ray-num-cpus", type=int, default=2, help="embedded local Ray only")
    p.add_argument("--export-coco", help="also write a COCO JSON with RLE segmentations here")
    p.add_argument("--eval-truth", help="COCO JSON with true masks: report mean mask IoU")
    p.add_argument("--num-overlays", type=int, default=4)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    teacher = TeacherConfig(backend=a.backend, arch=a.arch, min_size=a.min_size, max_size=a.max_size,
                            mask_threshold=a.mask_threshold, device=a.device)
    config = PseudoMaskJobConfig(annotations=a.annotations, images=a.images, out=a.out, checkpoint=a.checkpoint,
                                 teacher=teacher, rows_per_shard=a.rows_per_shard, limit=a.limit, strict=a.strict,
                                 num_actors=a.num_actors, gpus_per_actor=a.gpus_per_actor,
                                 cpus_per_actor=a.cpus_per_actor, batch_size=a.batch_size,
                                 ray_num_cpus=a.ray_num_cpus)
    manifest = run_pseudo_masks(config)
    print(manifest_summary(manifest))
    if a.export_coco:
        coco = export_coco(a.out, a.export_coco)
        print(f"exported {len(coco['annotations'])} annotations to {a.export_coco}")
    if a.eval_truth:
        result = evaluate_output(a.out, a.eval_truth, a.images, a.num_overlays)
        print(format_quality(result))
        print(json.dumps({"mean_iou": result["mean_iou"], "count": result["count"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
