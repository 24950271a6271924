"""Benchmark: images/s of our PQ scorer vs the official COCO panoptic API, same files and cores.

Generates N random COCO-panoptic ground-truth / prediction PNG pairs in a temporary
folder (random shapes, some crowd regions; prediction = perturbed ground truth). Then,
interleaved over ``--repeats`` rounds, it times the public entry points from files to
metrics:

* ``panopticapi.evaluation.pq_compute`` of the official checkout given by ``--official``
  (imported from that path at run time, never copied here), with its default
  multiprocessing pool of one process per core;
* ``vloss.eval.pq.pq_compute`` with each ``--workers`` count, in threads and, with
  ``--executors thread process``, in spawned processes too (start-up included).

It checks that both give the same PQ / SQ / RQ (per class and per group; they use the
same crowd rule, ``crowd_rule="official"``), and prints the best and median images/s of
each and the ratio ours / official measured in this run. Without ``--official`` the
official ratio is not measured and says so (``$PANOPTICAPI`` is the default for
``--official``, as in ``tests/vloss/eval/test_pq_crowd.py``). ``--breakdown`` also prints where our
scorer's time goes per image (CPU time of one thread, best of the rounds).

    .venv/bin/python bench/pq.py [--official /tmp/panopticapi] [--images 96] [--height 480]
                                 [--width 640] [--workers 1 2] [--executors thread process]
                                 [--repeats 3] [--breakdown]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from vloss.eval.pq import load_panoptic_pairs, pq_compute
from vloss.eval.pq_overlap import overlap_histogram
from vloss.eval.pq_png import ID_MASK, read_png_pixels
from vloss.eval.pq_stats import score_overlaps
from vloss.eval.pq_synthetic import SYNTHETIC_CATEGORIES, write_synthetic_dataset

TOLERANCE = 1e-12  # on PQ/SQ/RQ; sums over images are grouped differently (per core vs per image)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _load_official(path: Path, cores: int):
    """``pq_compute`` of the panopticapi checkout at ``path``, using ``cores`` processes."""
    if not (path / "panopticapi" / "evaluation.py").is_file():
        raise SystemExit(f"--official {path}: no panopticapi/evaluation.py there")
    sys.path.insert(0, str(path))
    from panopticapi import evaluation

    if multiprocessing.cpu_count() != cores:
        # The API sizes its pool with multiprocessing.cpu_count(); give it the cores this
        # process may use (e.g. under taskset), so that both scorers get the same cores.
        evaluation.multiprocessing = types.SimpleNamespace(cpu_count=lambda: cores, Pool=multiprocessing.Pool)
    return evaluation.pq_compute


def _official_run(official, files: dict) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress and a table
        return official(str(files["gt_json"]), str(files["pred_json"]), str(files["gt_dir"]), str(files["pred_dir"]))


def _max_difference(ours: dict, official: dict) -> float:
    """Largest |ours - official| over per-class and group PQ/SQ/RQ; SystemExit if classes differ."""
    by_id = {c["id"]: c["name"] for c in SYNTHETIC_CATEGORIES}
    worst = 0.0
    for cid, theirs in official["per_class"].items():
        mine = ours["per_class"].get(by_id[cid])
        if mine is None:  # a class that never occurs: the API reports zeros
            if any(theirs[k] != 0 for k in ("pq", "sq", "rq")):
                raise SystemExit(f"class {cid} scored by the official API only: the benchmark is void")
            continue
        worst = max(worst, *(abs(mine[k] - float(theirs[k])) for k in ("pq", "sq", "rq")))
    for group in ("All", "Things", "Stuff"):
        if ours[group]["n"] != official[group]["n"]:
            raise SystemExit(f"{group}: n = {ours[group]['n']} vs official {official[group]['n']}")
        worst = max(worst, *(abs(ours[group][k] - float(official[group][k])) for k in ("pq", "sq", "rq")))
    return worst


def _breakdown(files: dict, repeats: int) -> dict[str, float]:
    """Milliseconds of CPU per image in each stage of our scorer (one thread, best of ``repeats``)."""
    pairs, cats = load_panoptic_pairs(files["gt_json"], files["gt_dir"], files["pred_json"], files["pred_dir"])
    cat_index = np.asarray(sorted(cats), dtype=np.int64)
    best: dict[str, float] = {}
    for _ in range(repeats):
        spent = dict.fromkeys(("PNG decode + uint32 view (2 PNGs)", "joint histogram (row runs)",
                               "matching + counting per segment"), 0.0)
        for pair in pairs:
            t0 = time.thread_time()
            gt, pred = read_png_pixels(pair.gt_png), read_png_pixels(pair.pred_png)
            t1 = time.thread_time()
            pairs_hist = overlap_histogram(gt, pred, gt_mask=ID_MASK, pred_mask=ID_MASK)
            t2 = time.thread_time()
            score_overlaps(*pairs_hist, pair.gt_segments, pair.pred_segments, cats, cat_index,
                           crowd_rule="official", image_id=pair.image_id, gt_source="gt", pred_source="pred",
                           gt_png=pair.gt_png, pred_png=pair.pred_png)
            t3 = time.thread_time()
            for key, t in zip(spent, (t1 - t0, t2 - t1, t3 - t2)):
                spent[key] += t
        for key, t in spent.items():
            best[key] = min(best.get(key, math.inf), 1000 * t / len(pairs))
    return best


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, default=os.environ.get("PANOPTICAPI") or None,
                        help="a checkout of github.com/cocodataset/panopticapi to compare against "
                             "(default: $PANOPTICAPI)")
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executors", nargs="+", choices=("thread", "process"), default=["thread"],
                        help="how ours runs more than one worker")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds; best and median reported")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--breakdown", action="store_true", help="also time the stages of our scorer")
    args = parser.parse_args()

    cores = _cores()
    official = _load_official(args.official, cores) if args.official else None
    times: dict[str, list[float]] = {}
    runs = [(f"ours-{w}-{e}", w, e) for w in args.workers for e in (args.executors if w > 1 else ["thread"])]
    with tempfile.TemporaryDirectory() as tmp:
        files = write_synthetic_dataset(tmp, args.images, args.height, args.width, seed=args.seed)
        ours = {}
        for _ in range(args.repeats):
            if official is not None:
                theirs, t = _timed(_official_run, official, files)
                times.setdefault("official", []).append(t)
            for key, w, executor in runs:
                ours[key], t = _timed(pq_compute, files["gt_json"], files["gt_dir"], files["pred_json"],
                                      files["pred_dir"], workers=w, executor=executor)
                times.setdefault(key, []).append(t)
        stages = _breakdown(files, args.repeats) if args.breakdown else {}

    results = list(ours.values())
    if any(r != results[0] for r in results):
        raise SystemExit("our scorer gives different results for different worker counts: the benchmark is void")
    n = args.images
    print(f"{n} pairs of {args.width}x{args.height} PNGs, {cores} cores, {args.repeats} interleaved rounds; "
          f"PQ(all) = {results[0]['All']['pq']:.6f}")
    if official is not None:
        diff = _max_difference(results[0], theirs)
        if not diff <= TOLERANCE:
            raise SystemExit(f"ours and the official API differ by {diff:.3g}: the benchmark is void")
        print("per-class and group PQ/SQ/RQ agree with the official API: "
              + ("bit-identical" if diff == 0 else f"max |difference| {diff:.2g}"))

    def rate(key: str) -> tuple[float, float]:
        return n / min(times[key]), n / statistics.median(times[key])

    labels = {"thread": "threads", "process": "processes"}
    rows = ([("official pq_compute", "official", f"{cores} processes (fork)")] if official else []) + \
        [(f"ours, {w} worker{'s' if w > 1 else ''}", key, labels[e] if w > 1 else "this thread")
         for key, w, e in runs]
    for label, key, how in rows:
        best, med = rate(key)
        print(f"{label:22s}: {best:7.1f} images/s best, {med:7.1f} median  ({how})")
    one = runs[0][0]
    for key, w, e in runs:
        if w != args.workers[0]:
            print(f"scaling ours {args.workers[0]} -> {w} {labels[e]}: {rate(key)[0] / rate(one)[0]:.2f}x best, "
                  f"{rate(key)[1] / rate(one)[1]:.2f}x median")
    if stages:
        print("where our time goes, ms of CPU per image (1 thread, best of the rounds): "
              + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()) + f"; total {sum(stages.values()):.2f}")
    if official is None:
        print("ratio to the official COCO panoptic API: not measured (pass --official PATH to a panopticapi "
              "checkout)")
        return
    for label, key, how in rows[1:]:
        print(f"ratio {label} ({how}) / official ({cores} processes): {rate(key)[0] / rate('official')[0]:.2f}x "
              f"best, {rate(key)[1] / rate('official')[1]:.2f}x median")


if __name__ == "__main__":
    main()
