"""Evaluate a VLOSS checkpoint: ADE20K panoptic PQ, LVIS mask AP, COCO panoptic PQ, COCO mask AP.

On a cluster::

    ray job submit --working-dir . -- python jobs/evaluate.py --task ade20k-panoptic \\
        --checkpoint runs/vloss/checkpoint_000011 --data /datasets --out evals/ade \\
        --num-actors 8 --gpus-per-actor 1

On one machine (embedded local Ray), e.g. a trial on the synthetic world::

    python jobs/evaluate.py --task lvis --checkpoint runs/trial/ray_train/checkpoint_<time> \\
        --data runs/trial/world --limit 4

``--checkpoint`` is a training checkpoint directory (state.pt + meta.json) or a model-weights
file (give ``--config tiny|paper|baseline`` when the file stores no config). Writes
OUT/metrics.json, OUT/report.md, OUT/overlays/ and OUT/predictions/, and prints the report table.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines.eval_data import TASKS  # noqa: E402
from pipelines.evaluate import EvalJobConfig, run_evaluation, summary_lines  # noqa: E402


def parse_args(argv: list[str] | None = None) -> EvalJobConfig:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASKS)
    p.add_argument("--checkpoint", required=True, help="training checkpoint directory or model-weights file")
    p.add_argument("--data", default=None, help="data root (docs/EVALUATION.md); or use --gt-json/--images")
    p.add_argument("--gt-json", default=None, help="ground-truth JSON (overrides the layout under --data)")
    p.add_argument("--images", default=None, help="image folder (overrides the layout under --data)")
    p.add_argument("--gt-dir", default=None, help="ground-truth panoptic PNG folder (panoptic tasks)")
    p.add_argument("--out", default=None, help="output directory (default: evals/<task>)")
    p.add_argument("--config", default=None, choices=["tiny", "paper", "baseline"],
                   help="preset for a weights file that stores no config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for a weights file, e.g. model.decoder.num_layers=6")
    p.add_argument("--size", type=int, default=None, help="shorter side of the input (default: training size)")
    p.add_argument("--max-size", type=int, default=None, help="cap on the longer side (default: 4 x size)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images (trials)")
    p.add_argument("--topk", type=int, default=None, help="detections per image (default: LVIS 300, COCO 100)")
    p.add_argument("--template", action="append", default=None, help="prompt template with {} (repeatable)")
    p.add_argument("--object-mask-threshold", type=float, default=0.8,
                   help="panoptic: minimum class probability of a kept query (Mask2Former: 0.8)")
    p.add_argument("--overlap-threshold", type=float, default=0.8,
                   help="panoptic: minimum share of its mask a segment must keep (Mask2Former: 0.8)")
    p.add_argument("--overlays", type=int, default=4, help="overlay images to draw")
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.add_argument("--cpus-per-actor", type=float, default=None, help="default: 0.5 on CPU, 4 with GPUs")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--pq-workers", type=int, default=None)
    a = p.parse_args(argv)
    return EvalJobConfig(
        task=a.task, checkpoint=a.checkpoint, out=a.out or os.path.join("evals", a.task), data=a.data,
        gt_json=a.gt_json, images=a.images, gt_dir=a.gt_dir, config=a.config, overrides=list(a.set),
        size=a.size, max_size=a.max_size, limit=a.limit, topk=a.topk, templates=a.template,
        object_mask_threshold=a.object_mask_threshold, overlap_threshold=a.overlap_threshold,
        overlays=a.overlays, num_actors=a.num_actors, gpus_per_actor=a.gpus_per_actor,
        cpus_per_actor=a.cpus_per_actor if a.cpus_per_actor is not None else (4.0 if a.gpus_per_actor else 0.5),
        batch_size=a.batch_size, pq_workers=a.pq_workers)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    result = run_evaluation(cfg)
    print(summary_lines(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
