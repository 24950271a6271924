"""Pretrain the image and text towers CLIP-style with Ray Train (the paper takes them from ImageNet and CLIP).

On the synthetic world (its ``pretrain_corpus`` split; what ``make demo`` runs)::

    python -m jobs.pretrain --data demo_out/world --out demo_out/towers

On any COCO-captions-format corpus::

    ray job submit --working-dir . -- python -m jobs.pretrain --captions CAPTIONS.json --images IMAGES_DIR \\
        --out runs/towers --workers 8 --set pretrain.epochs=32 --set cluster.shared_fs=true

The run directory gets ``backbone.bin`` (a timm classification checkpoint) and ``text.bin`` (an
open_clip CLIP text state dict), which VLOSS loads as real weights::

    python -m jobs.train ... --set model.backbone.weights=OUT/backbone.bin --set model.text.weights=OUT/text.bin

Every setting of :class:`vloss.pretrain.config.PretrainConfig` is reachable with ``--set pretrain.KEY=VALUE``
(``pretrain.epochs=40``, ``pretrain.image_size=128``), the workers' with ``--set cluster.KEY=VALUE``.
Re-running the same command continues from the latest checkpoint; a finished run says it is complete.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipelines.common.cli import (
    add_set_argument,
    add_verbose_argument,
    settings_error,
    setup_output,
    split_overrides,
    write_resolved_config,
)
from pipelines.common.errors import report_errors
from pipelines.common.resources import default_cpus
from pipelines.train.config import ClusterConfig
from vloss.config_io import apply_overrides
from vloss.pretrain.config import PretrainConfig


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, PretrainConfig, ClusterConfig]:
    """Flags, the resolved pretraining settings and the cluster section."""
    p = argparse.ArgumentParser(prog="python -m jobs.pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="a synthetic world: its pretrain_corpus split is the corpus")
    src.add_argument("--captions", help="a COCO captions JSON (with --images)")
    p.add_argument("--images", help="the folder the captions' file_name entries are relative to")
    p.add_argument("--classes", help="class names of the label objective: a JSON list or one name per line "
                                     "(default with --data: the world's whole vocabulary; none with --captions)")
    p.add_argument("--out", required=True, help="run directory: towers, metrics, loss curve, checkpoints")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--gpus-per-worker", type=float, default=0.0)
    p.add_argument("--storage-path", default=None, help="Ray Train checkpoint storage (shared dir or s3://...)")
    p.add_argument("--overwrite", action="store_true", help="replace an --out that holds another plan")
    add_set_argument(p, "pretrain.epochs=40", lambda: {"pretrain.": PretrainConfig, "cluster.": ClusterConfig})
    add_verbose_argument(p)
    a = p.parse_args(argv)
    if a.captions and not a.images:
        p.error("--captions needs --images")
    routed, rest = split_overrides(a.overrides, ["cluster", "pretrain"])
    if rest:
        p.error(f"unknown settings {rest}: use --set pretrain.KEY=VALUE or --set cluster.KEY=VALUE")
    try:
        cluster = ClusterConfig(workers=a.workers, gpus_per_worker=a.gpus_per_worker,
                                cpus_per_worker=default_cpus(a.gpus_per_worker), storage_path=a.storage_path)
        apply_overrides(cluster, routed["cluster"], default_section=None, prefix="cluster.")
        pre = apply_overrides(PretrainConfig(), routed["pretrain"], default_section=None, prefix="pretrain.")
        PretrainConfig(**vars(pre))  # the range checks of __post_init__ on the overridden values
    except ValueError as exc:
        settings_error(p, exc)
    return a, pre, cluster


def main(argv: list[str] | None = None) -> int:
    a, pre, cluster = parse_args(argv)
    return report_errors("python -m jobs.pretrain", lambda: _run(a, pre, cluster), a.verbose)


def _run(a: argparse.Namespace, pre: PretrainConfig, cluster: ClusterConfig) -> int:
    from pipelines.common.ray_env import log_locations
    from pipelines.train.pretrain.inputs import class_names, corpus_paths
    from pipelines.train.pretrain.job import run_pretraining

    captions, images = corpus_paths(a.captions, a.images, a.data)
    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    setup_output(out, a.verbose)
    record = run_pretraining(pre, captions, images, out, cluster, overwrite=a.overwrite,
                             classes=class_names(a.classes, a.data))
    write_resolved_config(out, {"pretrain": pre, "cluster": cluster})
    print(f"[pretrain] pass them to training: {' '.join(record['use'])}")
    print(f"[pretrain] {log_locations()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
