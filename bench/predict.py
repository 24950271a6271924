"""Prediction speed: the CLI path and the Ray job against a plain loop over the same model and images.

Four ways over the same N images with the same network and vocabulary, each timed in this one
run (this machine is shared and noisy: compare the ratios, not the absolute numbers):

* ``plain loop``: read -> resize -> forward (batch 1) -> panoptic post-processing, calling the
  library's functions directly, nothing written;
* ``Predictor API``: ``Predictor(...)(paths)`` with the chosen batch size, nothing written;
* ``CLI``: ``python -m vloss predict`` in-process (writes overlay + PNG + JSON per image);
* ``Ray job``: ``jobs/predict.py``'s ``run_prediction`` on the already started local Ray (one
  predictor actor; Parquet shards), timed from submission to the manifest; Ray's start-up is
  printed separately.

Images: the synthetic world's COCO-panoptic val images (generated into a temporary folder) or
``--images DIR``. Checkpoint: ``--checkpoint`` or a randomly initialised ``tiny`` network saved
as a weights file (its threshold is set to 0 so that post-processing has segments to handle).

Usage::

    .venv/bin/python bench/predict.py                      # CPU, 48 images, tiny
    .venv/bin/python bench/predict.py --images DIR --checkpoint runs/x/best_checkpoint --device cuda
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

from pipelines.common.actor_pool import ActorPoolConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCAB = ["red circle", "blue square", "yellow star", "green crescent", "sky", "grass", "water", "road"]
STUFF = {"sky", "grass", "water", "road"}


def _images(args, tmp: Path) -> list[str]:
    if args.images:
        from vloss.inference.predict_cli import expand_inputs

        return [str(p) for p in expand_inputs([args.images])][: args.num_images]
    from vloss.data.synthetic import generate_world, load_world

    generate_world(tmp / "world", seed=0)
    val = Path(load_world(tmp / "world")["paths"]["coco_panoptic"]["val_images"])
    paths = sorted(str(p) for p in val.glob("*.jpg"))
    while len(paths) < args.num_images:
        paths += paths
    return paths[: args.num_images]


def _checkpoint(args, tmp: Path) -> str:
    if args.checkpoint:
        return args.checkpoint
    from vloss.config import tiny
    from vloss.config_io import to_dict
    from vloss.model import VLOSS, save_model_weights

    torch.manual_seed(0)
    path = tmp / "tiny_random.pt"
    save_model_weights(VLOSS(tiny().model), path, to_dict(tiny()))
    return str(path)


def plain_loop(predictor, paths: list[str]) -> float:
    """Seconds for the library's functions called one image at a time, nothing written."""
    from vloss.data.images import read_image
    from vloss.data.transforms import resize_for_inference
    from vloss.inference.postprocess import forward_padded, panoptic_inference, resize_mask_logits

    model, embeds, device = predictor.model, predictor.class_embeddings, predictor.device
    thr = predictor.settings.threshold if predictor.settings.threshold is not None else 0.8
    start = time.perf_counter()
    with torch.no_grad():
        for p in paths:
            rgb = read_image(p)
            small = resize_for_inference(rgb, predictor.size, predictor.max_size)
            out, padded = forward_padded(model, [small], embeds, device)
            masks = resize_mask_logits(out["pred_masks"][0], rgb.shape[:2], padded_size=padded,
                                       valid_size=small.shape[:2])  # [Q, H, W]
            seg_ids, _ = panoptic_inference(out["pred_logits"][0], masks, predictor.vocabulary.isthing, thr, 0.8)
            seg_ids.cpu()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default=None, help="image folder (default: synthetic world val images)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: a random tiny network)")
    p.add_argument("--num-images", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=2, help="torch threads of this process (CPU)")
    p.add_argument("--skip-ray", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from vloss.inference.predict_cli import main as cli_main
    from vloss.inference.predictor import Predictor

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        paths = _images(args, tmp)
        ckpt = _checkpoint(args, tmp)
        threshold = None if args.checkpoint else 0.0
        start = time.perf_counter()
        predictor = Predictor.from_checkpoint(ckpt, device=args.device, threshold=threshold,
                                              batch_size=args.batch_size)
        predictor.set_vocabulary(things=[n for n in VOCAB if n not in STUFF], stuff=[n for n in VOCAB if n in STUFF])
        load_s = time.perf_counter() - start  # paid once by the CLI (and by each Ray actor)
        predictor(paths[:2])  # warm-up (allocations, embeddings)
        n = len(paths)
        rows = []
        t = plain_loop(predictor, paths)
        rows.append(("plain loop (batch 1)", t))
        start = time.perf_counter()
        predictor(paths)
        rows.append((f"Predictor API (batch {args.batch_size})", time.perf_counter() - start))
        vocab_file = tmp / "vocab.txt"
        vocab_file.write_text("".join(f"{'stuff' if v in STUFF else 'thing'}: {v}\n" for v in VOCAB))
        cli_args = paths + ["--checkpoint", ckpt, "--vocab-file", str(vocab_file), "--out", str(tmp / "cli"),
                            "--device", args.device, "--batch-size", str(args.batch_size)]
        if threshold is not None:
            cli_args += ["--threshold", str(threshold)]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            rc = cli_main(cli_args)
        cli_s = time.perf_counter() - start
        rows.append((f"CLI, files written (batch {args.batch_size})", cli_s))
        rows.append(("CLI without its start-up (load + vocabulary)", cli_s - load_s))
        if rc != 0:
            print(f"CLI failed with exit status {rc}", file=sys.stderr)
            return 1
        ray_start = None
        if not args.skip_ray:
            from pipelines.common.ray_env import ensure_ray
            from pipelines.predict.config import PredictJobConfig
            from pipelines.predict.job import run_prediction

            start = time.perf_counter()
            ensure_ray(None)
            ray_start = time.perf_counter() - start
            (tmp / "ray_images").mkdir()
            for k, src in enumerate(paths):  # a folder of its own (the job lists folders)
                (tmp / "ray_images" / f"{k:04d}_{Path(src).name}").symlink_to(src)
            cfg = PredictJobConfig(images=str(tmp / "ray_images"), vocab_file=str(vocab_file), checkpoint=ckpt,
                                   out=str(tmp / "ray_out"), threshold=threshold, batch_size=args.batch_size,
                                   pool=ActorPoolConfig(gpus_per_actor=1.0 if args.device == "cuda" else 0.0))
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                run_prediction(cfg)
            rows.append((f"Ray job, 1 actor, shards written (batch {args.batch_size})", time.perf_counter() - start))
        base = rows[0][1]
        print(f"{n} images, device {args.device}, torch threads {args.threads}, checkpoint "
              f"{'given' if args.checkpoint else 'random tiny (threshold 0)'}")
        for name, secs in rows:
            print(f"  {name:<48} {n / secs:7.2f} img/s   ratio to plain loop {base / secs:5.2f}")
        print(f"  (start-up of a predictor, load + vocabulary: {load_s:.1f} s)")
        if ray_start is not None:
            print(f"  (Ray start-up, not included above: {ray_start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
