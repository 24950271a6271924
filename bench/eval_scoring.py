"""Panoptic evaluation job: PQ scored in memory while predicting vs from the written files afterwards.

Runs the Ray evaluation job twice on the same images, checkpoint and Ray session, with
``pq_from=memory`` (each image scored from the id map the actor returns, overlapped with
inference) and ``pq_from=files`` (every predicted PNG read and decoded again by ``pq_compute``
after inference), checks the metrics agree, and prints the job times, the scoring time left
after inference and their ratios (one run; the machine is shared and noisy).

Data: the ``ade20k_panoptic`` set of a synthetic world (generated, ``--size medium`` by default)
or ``--data DIR`` in the layout of docs/EVALUATION.md. Checkpoint: ``--checkpoint`` or a random
``tiny`` network (thresholds 0 so that every image has segments to score).

Usage::

    .venv/bin/python bench/eval_scoring.py
    .venv/bin/python bench/eval_scoring.py --data /data --checkpoint CKPT --limit 500 --num-actors 4 --gpus 1
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

from pipelines.common.actor_pool import ActorPoolConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="data root (default: a generated synthetic world)")
    p.add_argument("--world-size", default="medium", choices=["small", "medium", "large"])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--num-actors", type=int, default=1)
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs per actor")
    p.add_argument("--pq-workers", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from pipelines.common.ray_env import ensure_ray
    from pipelines.evaluate.config import EvalJobConfig
    from pipelines.evaluate.job import run_evaluation

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        data = args.data
        if data is None:
            from vloss.data.synthetic import generate_world

            generate_world(tmp / "world", seed=0, size_preset=args.world_size)
            data = str(tmp / "world")
        ckpt, thresholds = args.checkpoint, {}
        if ckpt is None:
            from vloss.config import tiny
            from vloss.config_io import to_dict
            from vloss.model import VLOSS, save_model_weights

            torch.manual_seed(0)
            ckpt = str(tmp / "tiny.pt")
            save_model_weights(VLOSS(tiny().model), ckpt, to_dict(tiny()))
            thresholds = {"object_mask_threshold": 0.0, "overlap_threshold": 0.0}
        ensure_ray(None)
        rows = {}
        for mode in ("files", "memory", "files", "memory"):  # alternate: drift on a shared machine hits both
            cfg = EvalJobConfig(task="ade20k_panoptic", checkpoint=ckpt, out=str(tmp / f"out_{mode}"), data=data,
                                limit=args.limit, overlays=0,
                                pool=ActorPoolConfig(num_actors=args.num_actors, gpus_per_actor=args.gpus),
                                pq_workers=args.pq_workers, pq_from=mode, **thresholds)
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                result = run_evaluation(cfg)
            total = time.perf_counter() - start
            after = result["manifest"]["scoring"]["seconds_after_inference"]
            best = rows.get(mode)
            if best is None or total < best[0]:
                rows[mode] = (total, after, result["metrics"], result["manifest"]["counts"]["images_evaluated"])
        (tf, af, mf, n), (tm, am, mm, _) = rows["files"], rows["memory"]
        same = all(abs(mf[g]["pq"] - mm[g]["pq"]) < 1e-9 for g in ("All", "Things", "Stuff") if mf[g]["pq"] is not None)
        print(f"ade20k_panoptic, {n} images, {args.num_actors} actor(s), {args.pq_workers} PQ threads; "
              f"best of 2 runs each; PQ {mm['All']['pq']:.4f} ({'equal' if same else 'DIFFERENT'} in both modes)")
        print(f"  pq_from=files : job {tf:6.1f} s, scoring after inference {af:6.2f} s")
        print(f"  pq_from=memory: job {tm:6.1f} s, scoring after inference {am:6.2f} s")
        print(f"  ratio files/memory: job {tf / tm:.2f}x, scoring after inference {af / max(am, 1e-3):.1f}x")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
