"""Is the input pipeline the bottleneck? Training steps fed by Ray Data vs fed from memory.

Runs the same ``tiny()`` training steps (forward, Eq. 6 loss, backward, AdamW) twice in one
process on the synthetic world's panoptic shards:

* **ray**: batches streamed from ``pipelines.train.datasets.pass_opener`` (seeded shuffled passes,
  decode + LSJ in Ray Data tasks, collate in the loop), exactly as the Ray Train workers read them;
* **memory**: the same number of batches, taken from that pipeline beforehand and held in a list.

Prints steps/s of both and the ratio ray/memory (target >= 0.9: the input pipeline keeps up).
On a 2-core machine the Ray Data tasks compete with the training step for the same cores, so
the ratio measured here is a lower bound of what a GPU node with idle CPUs gives.

    python bench/train_input.py [--steps 20] [--size 128] [--batch 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads of the training step (1 leaves a core for Ray Data on 2 cores)")
    p.add_argument("--rounds", type=int, default=3, help="alternating memory/ray rounds (median ratio)")
    p.add_argument("--work", default=None, help="reuse a work dir (world + shards)")
    a = p.parse_args()

    import torch

    from pipelines.common.ray_env import ensure_ray
    from pipelines.train.data_prep import prepare_shards
    from pipelines.train.datasets import pass_opener, task_shards
    from pipelines.train.shards import read_vocabulary
    from vloss.config import resolve
    from vloss.losses import SetCriterion, weighted_total
    from vloss.model import VLOSS
    from vloss.training.optim import build_optimizer
    from vloss.training.step import TaskForward, compute_losses

    torch.set_num_threads(a.threads)
    ensure_ray(2)
    work = a.work or tempfile.mkdtemp(prefix="vloss-bench-")
    shards = prepare_shards(None, work, rows_per_shard=32, box_masks=True)
    job = resolve("tiny", [f"input.dense_size={a.size}", f"train.dense_batch_size={a.batch}"])
    names = read_vocabulary(shards, "panoptic").names

    open_pass = pass_opener(task_shards(shards, ["panoptic"]), job, rank=0, world=1)

    def batches():
        p = 0
        while True:  # one seeded pass after another, as training reads them
            yield from open_pass("panoptic", p, 0)
            p += 1

    def run(source) -> float:
        torch.manual_seed(0)
        model = VLOSS(job.model)
        step = TaskForward(model, {"panoptic": names}, job.model.text.templates, "clip")
        opt = build_optimizer(model, job.optim)
        crit = SetCriterion(job.loss)
        it = iter(source)
        b = next(it)  # warm-up step outside the timing (first pass start-up, allocator)
        weighted_total(compute_losses("panoptic", step("panoptic", b["images"]), b, job.loss, crit),
                       job.loss).backward()
        t0 = time.perf_counter()
        for _ in range(a.steps):
            b = next(it)
            losses = compute_losses("panoptic", step("panoptic", b["images"]), b, job.loss, crit)
            loss = weighted_total(losses, job.loss)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return a.steps / (time.perf_counter() - t0)

    gen = batches()
    cached = [next(gen) for _ in range(a.steps + 1)]
    print(f"tiny() panoptic steps at {a.size}px, batch {a.batch}, {a.steps} steps, {os.cpu_count()} CPUs, "
          f"{a.threads} torch thread(s)")
    ratios = []
    for r in range(a.rounds):  # alternate, so a noisy spell on a shared machine hits both
        memory = run(cached)
        ray_rate = run(batches())
        ratios.append(ray_rate / memory)
        print(f"  round {r}: memory-fed {memory:.2f} steps/s, Ray Data {ray_rate:.2f} steps/s, "
              f"ratio {ratios[-1]:.3f}")
    print(f"ratio ray/memory = {statistics.median(ratios):.3f} (median of {a.rounds}; target >= 0.9)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
