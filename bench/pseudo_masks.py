"""Benchmark: the Ray Data pseudo-mask job vs a plain single-process loop.

Both run the same teacher (random-init Mask R-CNN from a saved state dict) over the same
images of a synthetic Objects365 world: read + decode JPEG, predict one mask per given
box, encode RLE. The plain loop runs with one torch thread, the same as a Ray actor
(Ray sets OMP_NUM_THREADS=1 for fractional-CPU actors), and with the same batch size.
The Ray side is timed from job start to manifest (teacher load, decode tasks, actor
pool, shard writing included; Ray start-up excluded, as a cluster is up once).

The plain loop is timed twice: in a fresh process (interpreter, imports, model load and
loop: the same fixed costs a Ray actor pays) and warm in this process (model load and
loop only). Prints images/s, the ratios ray / plain, the Ray overhead, and the peak
RSS of the processes involved (plain: the fresh process; Ray: driver + every Ray
process it started, sampled every 0.2 s from /proc). On a 2-core box shared with other
work the fixed start-up dominates small runs; use --images for longer ones.

    .venv/bin/python bench/pseudo_masks.py                      # ~1-2 min on 2 cores
    .venv/bin/python bench/pseudo_masks.py --images 96 --arch maskrcnn_resnet50_fpn --min-size 800
    .venv/bin/python bench/pseudo_masks.py --backend mmdet     # the MMDetection teacher (make install-mmdet)
    .venv/bin/python bench/pseudo_masks.py --num-actors 1 2 4 --images 48   # scaling with the actor pool

``--backend mmdet`` runs mmdet's packaged ``mask-rcnn_r50_fpn_1x_coco`` with a ResNet of ``--depth``
(18 by default, matching ``maskrcnn_resnet18_fpn``) at the same image sizes, saved in the model-zoo
layout, and also times the torchvision backend's warm plain loop on the same images (ratio).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.common.actor_pool import ActorPoolConfig
from pipelines.pseudo_masks.config import PseudoMaskJobConfig
from pipelines.pseudo_masks.job import load_detection_input, run_pseudo_masks
from vloss.data.images import read_image
from vloss.data.masks import encode_rle
from vloss.teacher import TeacherArchConfig, TeacherConfig, build_maskrcnn, build_teacher


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parents[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        for child, parent in parents.items():
            if parent == p and child not in found:
                found.add(child)
                frontier.append(child)
    return found


class TreeRssSampler(threading.Thread):
    """Peak summed RSS of this process and all its descendants."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_kib = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak_kib = max(self.peak_kib, sum(_rss_kib(p) for p in _descendants(os.getpid())))
            self._halt.wait(0.2)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak_kib


def plain_loop(det, images_root: Path, teacher: TeacherConfig, checkpoint: Path, batch_size: int) -> int:
    """The simple reference: one process, same teacher, same work per image; returns masks made."""
    model = build_teacher(teacher, checkpoint.read_bytes(), checkpoint_name=str(checkpoint))
    n = 0
    for start in range(0, len(det.images), batch_size):
        chunk = det.images[start:start + batch_size]
        arrays = [read_image(images_root / im.file_name) for im in chunk]
        boxes = [np.array([b.xyxy for b in im.instances]) for im in chunk]
        for out in model.predict(arrays, boxes):
            n += sum(len(encode_rle(m)["counts"]) > 0 for m in out.masks)
    return n


def mmdet_teacher(tmp: Path, depth: int, min_size: int, max_size: int) -> tuple[TeacherConfig, Path]:
    """mmdet's R50-FPN Mask R-CNN config with a ResNet-``depth`` at these sizes (a YAML file), and random
    weights saved by mmengine in the model-zoo layout."""
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

    from vloss.teacher.mmdet_predictor import build_mmdet_model, resolve_config

    cfg = resolve_config("mask-rcnn_r50_fpn_1x_coco")
    cfg.model.backbone.depth, cfg.model.backbone.init_cfg = depth, None
    if depth < 50:
        cfg.model.neck.in_channels = [64, 128, 256, 512]
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = (max_size, min_size)
    cfg.dump(str(tmp / "teacher.yaml"))
    torch.manual_seed(0)
    model = build_mmdet_model(resolve_config(str(tmp / "teacher.yaml")))
    save_checkpoint({"meta": {"epoch": 12}, "state_dict": weights_to_cpu(model.state_dict())}, str(tmp / "mmdet.pth"))
    return TeacherConfig(backend="mmdet", mmdet_config=str(tmp / "teacher.yaml")), tmp / "mmdet.pth"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=24, help="synthetic Objects365 images")
    ap.add_argument("--arch", default="maskrcnn_resnet18_fpn")
    ap.add_argument("--min-size", type=int, default=320)
    ap.add_argument("--max-size", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--num-actors", type=int, nargs="+", default=[1],
                    help="teacher actor counts to time the Ray job with (e.g. 1 2 4: the scaling table)")
    ap.add_argument("--rows-per-shard", type=int, default=8)
    ap.add_argument("--backend", choices=["maskrcnn", "mmdet"], default="maskrcnn")
    ap.add_argument("--depth", type=int, default=18, help="--backend mmdet: the ResNet depth")
    ap.add_argument("--mmdet-config", help=argparse.SUPPRESS)  # internal: the plain loop's mmdet config
    ap.add_argument("--plain-only", nargs=2, metavar=("ANNOTATIONS", "CHECKPOINT"),
                    help=argparse.SUPPRESS)  # internal: the cold plain loop in a fresh process
    a = ap.parse_args()
    if a.plain_only:
        torch.set_num_threads(1)
        ann, ckpt = Path(a.plain_only[0]), Path(a.plain_only[1])
        teacher = TeacherConfig(backend="maskrcnn", arch=a.arch, min_size=a.min_size, max_size=a.max_size) \
            if a.backend == "maskrcnn" else TeacherConfig(backend="mmdet", mmdet_config=a.mmdet_config)
        det = load_detection_input(str(ann))
        plain_loop(det, ann.parents[1] / "images" / "train", teacher, ckpt, a.batch_size)
        return 0

    import ray

    from vloss.data.synthetic import WorldSizes, generate_world

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_pm_"))
    generate_world(tmp / "world", seed=0, sizes=WorldSizes(coco_panoptic_train=1, coco_panoptic_val=1,
                                                           objects365_train=a.images, image_text=1,
                                                           ade20k_val=1, lvis_val=1))
    ann = tmp / "world" / "objects365" / "annotations" / "train.json"
    images_root = tmp / "world" / "objects365" / "images" / "train"
    torch.manual_seed(0)
    model = build_maskrcnn(TeacherArchConfig(a.arch, num_classes=91, min_size=a.min_size, max_size=a.max_size))
    checkpoint = tmp / "teacher.pth"
    torch.save(model.state_dict(), checkpoint)
    del model
    tv_teacher = TeacherConfig(backend="maskrcnn", arch=a.arch, min_size=a.min_size, max_size=a.max_size)
    teacher, tv_checkpoint = tv_teacher, checkpoint
    if a.backend == "mmdet":
        teacher, checkpoint = mmdet_teacher(tmp, a.depth, a.min_size, a.max_size)
    det = load_detection_input(str(ann))
    n_img, n_box = len(det.images), det.num_boxes
    print(f"{n_img} images, {n_box} boxes, backend={a.backend}, "
          + (f"arch={a.arch}" if a.backend == "maskrcnn" else f"mmdet R{a.depth}-FPN")
          + f", min_size={a.min_size}, batch={a.batch_size}")

    # cold: a fresh process (interpreter, imports, model load, loop) -- what a plain script costs
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--plain-only", str(ann), str(checkpoint), "--arch", a.arch,
                    "--min-size", str(a.min_size), "--max-size", str(a.max_size),
                    "--batch-size", str(a.batch_size), "--backend", a.backend]
                   + (["--mmdet-config", teacher.mmdet_config] if teacher.mmdet_config else []), check=True)
    cold_s = time.perf_counter() - t0
    cold_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss            # KiB on Linux
    # warm: in this process, after imports (model load + loop only)
    t0 = time.perf_counter()
    masks = plain_loop(det, images_root, teacher, checkpoint, a.batch_size)
    plain_s = time.perf_counter() - t0
    assert masks == n_box
    tv_s = None
    if a.backend == "mmdet":  # the torchvision backend on the same images, warm
        t0 = time.perf_counter()
        plain_loop(det, images_root, tv_teacher, tv_checkpoint, a.batch_size)
        tv_s = time.perf_counter() - t0

    cores = os.cpu_count() or 2
    runs = []
    for n in a.num_actors:
        ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
        sampler = TreeRssSampler()
        sampler.start()
        # the actors share the cores, leaving half a core for the decode tasks (two per actor by default)
        cfg = PseudoMaskJobConfig(annotations=str(ann), images=str(images_root), out=str(tmp / f"out{n}"),
                                  checkpoint=str(checkpoint), teacher=teacher, rows_per_shard=a.rows_per_shard,
                                  batch_size=a.batch_size,
                                  pool=ActorPoolConfig(num_actors=n, cpus_per_actor=min(0.5, (cores - 0.5) / n),
                                                       ray_num_cpus=cores))
        t0 = time.perf_counter()
        manifest = run_pseudo_masks(cfg)
        runs.append((n, time.perf_counter() - t0, sampler.stop(), cfg.pool.decode_task_count))
        ray.shutdown()
        assert manifest["counts"]["masks_written"] == n_box
    _, ray_s, ray_rss, _ = runs[0]
    cold_ips, plain_ips, ray_ips = n_img / cold_s, n_img / plain_s, n_img / ray_s
    print(f"plain loop, fresh process : {cold_ips:6.2f} images/s  ({cold_s:.1f} s incl. imports + model load)  "
          f"peak RSS {cold_rss / 1024:.0f} MiB")
    print(f"plain loop, warm process  : {plain_ips:6.2f} images/s  ({plain_s:.1f} s incl. model load)")
    print(f"ray data job              : {ray_ips:6.2f} images/s  ({ray_s:.1f} s, Ray already up; actor imports "
          f"+ model load included)  peak RSS {ray_rss / 1024:.0f} MiB (driver + all Ray processes, "
          f"shared object-store pages counted per process)")
    print(f"ratio ray/plain(fresh process) = {ray_ips / cold_ips:.3f}  -> ray overhead "
          f"{100 * (1 - ray_ips / cold_ips):.1f}% (target < 15%)")
    print(f"ratio ray/plain(warm process)  = {ray_ips / plain_ips:.3f}  -> ray overhead "
          f"{100 * (1 - ray_ips / plain_ips):.1f}%")
    if len(runs) > 1 or runs[0][0] > 1:
        print(f"scaling over teacher actors on {cores} cores (ideal: the warm plain loop x min(actors, cores)):")
        for n, secs, rss, decode in runs:
            ips = n_img / secs
            ideal = plain_ips * min(n, cores)
            print(f"  {n} actor(s), {decode} decode tasks: {ips:6.2f} images/s ({secs:.1f} s), "
                  f"ratio to ideal {ips / ideal:.3f}, per actor {ips / n:.2f} images/s, "
                  f"peak RSS {rss / 1024:.0f} MiB")
    if tv_s is not None:
        print(f"torchvision {a.arch}, warm   : {n_img / tv_s:6.2f} images/s  ({tv_s:.1f} s incl. model load); "
              f"ratio mmdet/torchvision (warm plain loops) = {tv_s / plain_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
