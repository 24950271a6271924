"""Segment many images with a trained model and any vocabulary, as a Ray job.

On a cluster::

    ray job submit --working-dir . -- python -m jobs.predict --images s3://bucket/photos \\
        --vocab-file vocab.txt --checkpoint /shared/runs/vloss/best_checkpoint --out s3://bucket/preds \\
        --num-actors 8 --gpus-per-actor 1 [--set overlays=true] [--set task=instance]

On one machine it runs on an embedded local Ray. Writes ``OUT/gen-NNNN/part-*.parquet`` (one row
per image: its segments with RLE masks, class names and scores), ``OUT/_manifest.json`` (counts,
failed images with reasons), ``OUT/_config.json`` and, with ``--set overlays=true``,
``OUT/overlays/``. Re-running the same command completes what is missing. Every field of
:class:`pipelines.predict.config.PredictJobConfig` is a ``--set``.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.common.cli import add_set_argument, add_verbose_argument, settings_error, setup_output
from pipelines.common.errors import report_errors
from pipelines.predict.config import PredictJobConfig
from vloss.config_io import apply_overrides
from vloss.inference.predict_cli import add_vocabulary_arguments, name_list


def parse_args(argv: list[str] | None = None) -> tuple[PredictJobConfig, bool]:
    """The job config from flags and ``--set`` overrides, and whether --verbose was given."""
    p = argparse.ArgumentParser(prog="python -m jobs.predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", required=True, help="image folder / prefix (recursive) or a local glob")
    add_vocabulary_arguments(p)
    p.add_argument("--checkpoint", required=True, help="training checkpoint directory or weights file")
    p.add_argument("--out", required=True, help="output directory (path or URI)")
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--gpus-per-actor", type=float, default=0.0, help="an actor holding a GPU predicts on CUDA")
    p.add_argument("--overwrite", action="store_true", help="replace an output of another plan instead of refusing")
    add_set_argument(p, "overlays=true", lambda: {"": PredictJobConfig})
    add_verbose_argument(p)
    a = p.parse_args(argv)
    try:
        cfg = PredictJobConfig(images=a.images, vocab_file=a.vocab_file, things=tuple(name_list(a.things)),
                               stuff=tuple(name_list(a.stuff)), checkpoint=a.checkpoint, out=a.out,
                               pool=ActorPoolConfig(num_actors=a.num_actors, gpus_per_actor=a.gpus_per_actor),
                               overwrite=a.overwrite)
        apply_overrides(cfg, a.overrides, default_section=None)
    except ValueError as exc:
        settings_error(p, exc)
    setup_output(cfg.out, a.verbose)
    return cfg, a.verbose


def main(argv: list[str] | None = None) -> int:
    cfg, verbose = parse_args(argv)

    def run() -> int:
        from pipelines.common.ray_env import log_locations
        from pipelines.predict.job import run_prediction  # torch and Ray: not for --help

        m = run_prediction(cfg)
        c = m["counts"]
        print(f"[predict] {c['predicted']}/{c['images']} images predicted, {c['failed']} failed; "
              f"shards {c['shards']} (written {c['shards_written']}, kept {c['shards_kept']}) in {cfg.out}")
        for e in m["errors"][:10]:
            print(f"[predict] failed {e['image']}: {e['reason']}")
        print(f"[predict] {log_locations()}")
        return 0

    return report_errors("python -m jobs.predict", run, verbose)


if __name__ == "__main__":
    sys.exit(main())
