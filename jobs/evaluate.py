"""Evaluate a VLOSS checkpoint: ADE20K panoptic PQ, LVIS mask AP, COCO panoptic PQ, COCO mask AP.

On a cluster::

    ray job submit --working-dir . -- python -m jobs.evaluate --task ade20k_panoptic \\
        --checkpoint runs/vloss/checkpoint_000011 --data /datasets --out evals/ade \\
        --num-actors 8 --gpus-per-actor 1

On one machine (embedded local Ray), e.g. a trial on the synthetic world::

    python -m jobs.evaluate --task lvis --checkpoint runs/trial/ray_train/checkpoint_<time> \\
        --data runs/trial/world --set limit=4

``--checkpoint`` is a training checkpoint directory (state.pt + meta.json) or a model-weights
file (give ``--config tiny|paper|baseline`` when the file stores no config). Every field of
:class:`pipelines.evaluate.config.EvalJobConfig` is reachable with ``--set`` (``size=640``,
``limit=100``, ``object_mask_threshold=0.8``, ``overlays=8``, ``pq_workers=4``); a ``--set`` whose
key starts with a section of the training recipe (``model.text.templates=a photo of a {}.``)
overrides the checkpoint's own config. Writes OUT/metrics.json, OUT/report.md, OUT/config.json,
OUT/overlays/ and OUT/predictions/, and prints the report table.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.common.cli import add_set_argument, add_verbose_argument, settings_error, setup_output, split_overrides
from pipelines.common.errors import report_errors
from pipelines.evaluate.config import EvalJobConfig
from pipelines.evaluate.tasks import TASK_NAMES
from vloss.config import TrainJobConfig
from vloss.config_io import apply_overrides

RECIPE_SECTIONS = tuple(f.name for f in dataclasses.fields(TrainJobConfig))


def parse_args(argv: list[str] | None = None) -> tuple[EvalJobConfig, bool]:
    """The evaluation config from flags and ``--set`` overrides, and whether --verbose was given."""
    p = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=TASK_NAMES)
    p.add_argument("--checkpoint", required=True, help="training checkpoint directory or model-weights file")
    p.add_argument("--data", default=None, help="data root (docs/EVALUATION.md); or use --gt-json/--images")
    p.add_argument("--gt-json", default=None, help="ground-truth JSON (overrides the layout under --data)")
    p.add_argument("--images", default=None, help="image folder (overrides the layout under --data)")
    p.add_argument("--gt-dir", default=None, help="ground-truth panoptic PNG folder (panoptic tasks)")
    p.add_argument("--vocab-file", default=None,
                   help="prompt the set's categories with these names: things then stuff, in the set's category "
                        "order (thing:/stuff: lines or JSON; docs/CUSTOM_DATA.md)")
    p.add_argument("--out", default=None, help="output directory (default: evals/<task>)")
    p.add_argument("--config", default=None, choices=["tiny", "paper", "baseline"],
                   help="preset for a weights file that stores no config")
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="an actor holding a GPU predicts on CUDA")
    add_set_argument(p, "size=640", lambda: {"": EvalJobConfig},
                     note="and the checkpoint's recipe keys (model.*, input.*, ...: python -m jobs.train "
                          "--help-settings)")
    add_verbose_argument(p)
    a = p.parse_args(argv)
    routed, own = split_overrides(a.overrides, RECIPE_SECTIONS)
    recipe = [f"{section}.{item}" for section, items in routed.items() for item in items]
    try:
        cfg = EvalJobConfig(task=a.task, checkpoint=a.checkpoint, out=a.out or os.path.join("evals", a.task),
                            data=a.data, gt_json=a.gt_json, images=a.images, gt_dir=a.gt_dir,
                            vocab_file=a.vocab_file, config=a.config,
                            overrides=tuple(recipe),
                            pool=ActorPoolConfig(num_actors=a.num_actors, gpus_per_actor=a.gpus_per_actor))
        apply_overrides(cfg, own, default_section=None)
    except ValueError as exc:
        settings_error(p, exc)
    setup_output(cfg.out, a.verbose)
    return cfg, a.verbose


def main(argv: list[str] | None = None) -> int:
    cfg, verbose = parse_args(argv)

    def run() -> int:
        from pipelines.evaluate.job import run_evaluation, summary_lines  # torch and Ray: not for --help

        print(summary_lines(run_evaluation(cfg)))
        return 0

    return report_errors("python -m jobs.evaluate", run, verbose)


if __name__ == "__main__":
    sys.exit(main())
