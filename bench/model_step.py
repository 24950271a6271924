"""Training-step cost of the VLOSS network: time and peak memory per image, fp32 vs bf16 autocast.

For the ``tiny`` and ``paper`` presets at 768x768 (paper Sec. 4.2 training size), one training
step = class embeddings (text tower, trainable) + forward + loss + backward. The loss is the real
matcher + criterion of ``vloss.losses`` when that package provides them (its share of the step
time is printed), otherwise the mean of the outputs ("n/a").

Each (preset, precision) runs in its own subprocess so that peak memory can be read cleanly:
on CPU the peak resident set size during the step minus the resident size before it; on CUDA
``torch.cuda.max_memory_allocated`` minus the memory allocated before the step.

Prints the measurements and the ratios bf16/fp32 (per preset) and paper/tiny (per precision).
Reported time is the median measured step. The first full-size steps of a process are several
times slower (fresh memory pages for the large activations); tiny gets 3 full-size warm-up
steps by default, paper none (``--paper-warmup 1`` for a steadier number, at twice the cost).
CPU timings on a shared machine are noisy (other processes take the cores): the process CPU
time (user + system, all threads) of the step is printed beside the wall time and is the
steadier number to compare there. The default is one torch thread: with several, OpenMP
threads spin while waiting for a descheduled sibling, inflating both numbers many times over.

Usage::

    .venv/bin/python bench/model_step.py                    # 1 image, 1 step for paper (under a minute)
    .venv/bin/python bench/model_step.py --paper-steps 3 --batch 2 --size 512
    .venv/bin/python bench/model_step.py --device cuda      # on a GPU machine
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

NUM_CLASSES = 10
TARGETS_PER_IMAGE = 6


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _targets(batch: int, size: int, device: torch.device, gen: torch.Generator) -> list[dict]:
    """Random rectangles as target masks with random labels (the criterion's input contract)."""
    targets = []
    for _ in range(batch):
        masks = torch.zeros(TARGETS_PER_IMAGE, size, size, dtype=torch.bool)
        for m in masks:
            y0, x0 = torch.randint(0, size // 2, (2,), generator=gen).tolist()
            h, w = torch.randint(size // 8, size // 2, (2,), generator=gen).tolist()
            m[y0:y0 + h, x0:x0 + w] = True
        labels = torch.randint(0, NUM_CLASSES, (TARGETS_PER_IMAGE,), generator=gen)
        targets.append({"labels": labels.to(device), "masks": masks.to(device)})
    return targets


def run_one(preset_name: str, precision: str, size: int, batch: int, steps: int, warmup: int,
            device_name: str) -> dict:
    """Measure one configuration in this process; returns a JSON-able dict."""
    from vloss.config import preset
    from vloss.losses import SetCriterion, weighted_total
    from vloss.model import VLOSS
    from vloss.training.step import compute_losses

    torch.manual_seed(0)
    device = torch.device(device_name)
    cfg = preset(preset_name)
    model = VLOSS(cfg.model).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = SetCriterion(cfg.loss)
    names = [f"class {i}" for i in range(NUM_CLASSES)]
    gen = torch.Generator().manual_seed(0)
    targets = _targets(batch, size, device, gen)
    images = torch.randn(batch, 3, size, size, device=device)
    use_bf16 = precision == "bf16"

    def step(x: torch.Tensor, tgts: list[dict]) -> tuple[float, float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            cls = model.text.class_embeddings(names)  # trainable text: recomputed with grad
            out = model(x, class_embeds=cls)
        _sync(device)
        t1 = time.perf_counter()
        loss = weighted_total(compute_losses("panoptic", out, {"targets": tgts}, cfg.loss, criterion), cfg.loss)
        _sync(device)
        loss_time = time.perf_counter() - t1
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - t0, loss_time, time.process_time() - c0

    # warm-up at a small size (lazy initialisation), then `warmup` full-size steps: the first
    # full-size steps pay for fresh memory pages (large tensors are mmap'ed by the allocator)
    small = min(size, 64)
    step(torch.randn(1, 3, small, small, device=device), _targets(1, small, device, gen))
    if device.type == "cuda":  # peak = highest memory during any full-size step minus memory before them
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _rss_bytes()
    for _ in range(warmup):
        step(images, targets)
    times, loss_times, cpu_times = [], [], []
    for _ in range(steps):
        dt, lt, ct = step(images, targets)
        times.append(dt)
        loss_times.append(lt)
        cpu_times.append(ct)
    pick = sorted(range(steps), key=lambda i: times[i])[steps // 2]  # the median step
    total, loss_total = times[pick], loss_times[pick]
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda" else _max_rss_bytes()) - base
    return {
        "preset": preset_name, "precision": precision, "size": size, "batch": batch, "steps": steps,
        "device": device_name, "threads": torch.get_num_threads(),
        "warmup": warmup, "sec_per_image": total / batch, "cpu_sec_per_image": cpu_times[pick] / batch,
        "peak_mb_per_image": max(peak, 0) / batch / 2**20,
        "loss_share": (loss_total / total) if criterion is not None else None,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=768, help="square input side (divisible by 32)")
    parser.add_argument("--batch", type=int, default=1, help="images per step")
    parser.add_argument("--paper-steps", type=int, default=1, help="measured steps for paper")
    parser.add_argument("--tiny-steps", type=int, default=3, help="measured steps for tiny")
    parser.add_argument("--paper-warmup", type=int, default=0, help="unmeasured full-size steps for paper")
    parser.add_argument("--tiny-warmup", type=int, default=3, help="unmeasured full-size steps for tiny")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (1: no OpenMP spin-waiting when the cores are shared)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: preset:precision in this process
    args = parser.parse_args()

    if args.one:
        torch.set_num_threads(args.threads)
        name, precision = args.one.split(":")
        steps = args.paper_steps if name == "paper" else args.tiny_steps
        warmup = args.paper_warmup if name == "paper" else args.tiny_warmup
        print(json.dumps(run_one(name, precision, args.size, args.batch, steps, warmup, args.device)))
        return 0

    results = {}
    for name in ("tiny", "paper"):
        for precision in args.precisions.split(","):
            cmd = [sys.executable, __file__, "--one", f"{name}:{precision}", "--size", str(args.size),
                   "--batch", str(args.batch), "--paper-steps", str(args.paper_steps),
                   "--tiny-steps", str(args.tiny_steps), "--paper-warmup", str(args.paper_warmup),
                   "--tiny-warmup", str(args.tiny_warmup), "--device", args.device,
                   "--threads", str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return proc.returncode
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results[(name, precision)] = r
            share = "n/a" if r["loss_share"] is None else f"{100 * r['loss_share']:.1f}%"
            print(f"{name:<6} {precision:<5} {args.size}x{args.size} batch {args.batch} on {args.device} "
                  f"({r['threads']} threads, median of {r['steps']} step(s) after {r['warmup']} warm-up): "
                  f"{r['sec_per_image']:.3f} s/image (process CPU {r['cpu_sec_per_image']:.3f} s), "
                  f"peak {r['peak_mb_per_image']:.0f} MiB/image, matcher+criterion share {share}")
    precisions = args.precisions.split(",")
    if "fp32" in precisions and "bf16" in precisions:
        for name in ("tiny", "paper"):
            a, b = results[(name, "bf16")], results[(name, "fp32")]
            print(f"ratio bf16/fp32 {name}: time {a['sec_per_image'] / b['sec_per_image']:.2f}, "
                  f"CPU time {a['cpu_sec_per_image'] / b['cpu_sec_per_image']:.2f}, "
                  f"peak memory {a['peak_mb_per_image'] / max(b['peak_mb_per_image'], 1e-9):.2f}")
    for precision in precisions:
        a, b = results[("paper", precision)], results[("tiny", precision)]
        print(f"ratio paper/tiny {precision}: time {a['sec_per_image'] / b['sec_per_image']:.1f}, "
              f"CPU time {a['cpu_sec_per_image'] / b['cpu_sec_per_image']:.1f}, "
              f"peak memory {a['peak_mb_per_image'] / max(b['peak_mb_per_image'], 1e-9):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
