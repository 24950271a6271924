"""Benchmark: images/s of the PQ scorer (vectorised, process pool) vs the loop reference.

Generates N random COCO-panoptic ground-truth / prediction PNG pairs in a temporary
folder (random shapes; prediction = perturbed ground truth), scores them with
``vloss.eval.pq.pq_compute`` (parallel and single-process) and with the straightforward
single-process ``vloss.eval.pq_reference.pq_compute_reference``, checks that all agree,
and prints the speed ratio measured in this run.

    .venv/bin/python bench/pq.py [--images 48] [--height 480] [--width 640] [--workers N]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

from vloss.eval.pq import default_workers, pq_compute
from vloss.eval.pq_reference import pq_compute_reference
from vloss.eval.pq_synthetic import write_synthetic_dataset


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _same(a: dict, b: dict) -> bool:
    return all(math.isclose(a[g][k], b[g][k], abs_tol=1e-9) for g in ("All", "Things", "Stuff")
               for k in ("pq", "sq", "rq") if a[g][k] is not None) and a["per_class"].keys() == b["per_class"].keys()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        p = write_synthetic_dataset(tmp, args.images, args.height, args.width, seed=args.seed)
        files = (p["gt_json"], p["gt_dir"], p["pred_json"], p["pred_dir"])
        fast, t_fast = _timed(pq_compute, *files, workers=args.workers)
        single, t_single = _timed(pq_compute, *files, workers=1)
        ref, t_ref = _timed(pq_compute_reference, *files)
    if not (_same(fast, ref) and _same(single, ref)):
        raise SystemExit("scorers disagree: the benchmark is void")
    n = args.images
    print(f"{n} images of {args.width}x{args.height}, PQ(all) = {fast['All']['pq']:.4f} (all scorers agree)")
    print(f"reference (pure-Python loops, 1 process): {n / t_ref:8.1f} images/s  ({t_ref:.2f} s)")
    print(f"vectorised, 1 process                  : {n / t_single:8.1f} images/s  ({t_single:.2f} s)")
    print(f"vectorised, {args.workers} worker processes      : {n / t_fast:8.1f} images/s  ({t_fast:.2f} s, "
          f"incl. process start-up)")
    print(f"ratio parallel / reference: {t_ref / t_fast:.1f}x   (vectorised 1-process / reference: "
          f"{t_ref / t_single:.1f}x)")


if __name__ == "__main__":
    main()
