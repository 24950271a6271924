"""Gradient accumulation (issue #24 item 6): one optimizer step over micro-batches, or over workers
sharing the global batch unevenly, has the loss and the gradients of the same batch in one piece.

References: the whole batch through :func:`forward_backward` without a cut (its normalisers are the
batch's own, checked against PyTorch's weighted-mean cross-entropy below), and for the workers a
2-process gloo DDP run against a 1-process run of the same 3 images.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from vloss.config import resolve
from vloss.losses import ContrastiveLoss, SetCriterion
from vloss.model import VLOSS
from vloss.training.accumulate import forward_backward, micro_batch_sizes, slice_batch
from vloss.training.step import TaskForward, compute_losses

VOCAB = ["sky", "red ring", "grass", "blue square"]
# no drop-path, no dropout: those masks are drawn per forward, the one thing a cut changes
SETTINGS = ["loss.num_points=96", "model.decoder.num_queries=6", "model.backbone.drop_path_rate=0.0",
            "model.decoder.dropout=0.0"]


def _job():
    return resolve("tiny", SETTINGS)


def _batch(n: int = 5) -> dict:
    g = torch.Generator().manual_seed(7)
    images = torch.randn(n, 3, 64, 64, generator=g)
    targets = []
    for i in range(n):
        m = int(torch.randint(1, 4, (1,), generator=g))
        masks = torch.rand(m, 64, 64, generator=g) > 0.6
        targets.append({"labels": torch.randint(0, len(VOCAB), (m,), generator=g), "masks": masks})
    return {"images": images, "targets": targets, "image_ids": list(range(n)),
            "captions": [f"a photo of {VOCAB[i % 4]}" for i in range(n)]}


def _grads(task: str, micro: int, batch: dict | None = None) -> tuple[dict, float, dict]:
    job = _job()
    torch.manual_seed(0)
    model = VLOSS(job.model).train()
    fwd = TaskForward(model, {"panoptic": VOCAB, "detection": VOCAB}, job.model.text.templates, "clip")
    losses, total = forward_backward(fwd, task, batch or _batch(), micro=micro, run_seed=3, global_step=11,
                                     first_image=0, num_queries=job.model.decoder.num_queries, loss_cfg=job.loss,
                                     criterion=SetCriterion(job.loss),
                                     contrastive=ContrastiveLoss.from_config(job.loss))
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, float(total), {k: float(v) for k, v in losses.items()}


def _close(got: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    """Equal to float32 summation order: within 1e-5 of the tensor's largest entry (measured: 2e-6)."""
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5 * float(ref.abs().max()) + 1e-12, msg=name)


def test_micro_batch_sizes() -> None:
    assert micro_batch_sizes(11, 4) == [4, 4, 3]
    assert micro_batch_sizes(8, 4) == [4, 4]
    assert micro_batch_sizes(8, 0) == [8] and micro_batch_sizes(3, 5) == [3]
    with pytest.raises(ValueError):
        micro_batch_sizes(0, 2)


@pytest.mark.parametrize("task", ["panoptic", "detection"])
@pytest.mark.parametrize("micro", [1, 2, 3])
def test_micro_batches_give_the_whole_batch_step(task: str, micro: int) -> None:
    ref, ref_total, ref_losses = _grads(task, 0)
    got, total, losses = _grads(task, micro)
    assert got.keys() == ref.keys() and len(ref) > 50
    assert total == pytest.approx(ref_total, rel=1e-5)
    for k in ref_losses:
        assert losses[k] == pytest.approx(ref_losses[k], rel=1e-5, abs=1e-7), k
    for name in ref:
        _close(got[name], ref[name], name)


def test_caption_batches_are_never_cut() -> None:
    """The contrastive loss needs the whole batch's negatives: ``micro`` does not cut captions."""
    ref, ref_total, _ = _grads("captions", 0)
    got, total, _ = _grads("captions", 1)
    assert total == ref_total
    for name in ref:
        assert torch.equal(got[name], ref[name]), name


def test_whole_batch_normalisers_are_pytorchs_weighted_mean() -> None:
    """With the batch's own normalisers, the loss is PyTorch's weighted-mean cross-entropy and the
    mask mean over the batch's masks (the criterion without normalisers: Mask2Former's definition)."""
    job = _job()
    torch.manual_seed(0)
    model = VLOSS(job.model).train()
    fwd = TaskForward(model, {"panoptic": VOCAB}, job.model.text.templates, "clip")
    batch = _batch(4)
    with torch.no_grad():
        out = fwd("panoptic", batch["images"])
    crit = SetCriterion(job.loss)
    q = job.model.decoder.num_queries
    norms = crit.normalizers(batch["targets"], q, positive_only=False)
    masks = sum(len(t["labels"]) for t in batch["targets"])
    assert norms == (masks, pytest.approx(masks + job.loss.no_object_weight * (4 * q - masks)))
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    a = compute_losses("panoptic", out, batch, job.loss, crit, generator=gens)
    gens = [torch.Generator().manual_seed(i) for i in range(4)]
    b = compute_losses("panoptic", out, batch, job.loss, crit, generator=gens, normalizers=norms)
    for k in a:
        assert float(b[k]) == pytest.approx(float(a[k]), rel=1e-5), k


def test_slice_batch_keeps_rows_together() -> None:
    batch = _batch(5)
    part = slice_batch(batch, 1, 3)
    assert part["image_ids"] == [1, 2] and part["images"].shape[0] == 2 and len(part["targets"]) == 2
    assert torch.equal(part["targets"][0]["masks"], batch["targets"][1]["masks"])


# ---- workers sharing the global batch unevenly (3 images: 2 + 1) --------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, split: list[int], micro: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    try:
        job = _job()
        torch.manual_seed(0)
        model = VLOSS(job.model).train()
        fwd = TaskForward(model, {"panoptic": VOCAB}, job.model.text.templates, "clip")
        ddp = torch.nn.parallel.DistributedDataParallel(fwd, find_unused_parameters=True)
        first = sum(split[:rank])
        batch = slice_batch(_batch(sum(split)), first, first + split[rank])
        _, total = forward_backward(ddp, "panoptic", batch, micro=micro, run_seed=3, global_step=11,
                                    first_image=first, num_queries=job.model.decoder.num_queries, loss_cfg=job.loss,
                                    criterion=SetCriterion(job.loss), contrastive=None)
        if rank == 0:
            torch.save({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, out)
    finally:
        torch.distributed.destroy_process_group()


def test_two_workers_with_unequal_shares_give_the_global_batch_step(tmp_path) -> None:
    """32 on 3 workers is 11/11/10; here 3 on 2 is 2/1, the second worker also cutting nothing and the
    first cutting its 2 into micro-batches of 1. DDP's mean over workers of the gradients, with the
    losses normalised over the global batch, equals the 1-process step on all 3 images."""
    ref, _, _ = _grads("panoptic", 0, _batch(3))
    out = str(tmp_path / "grads.pt")
    mp.spawn(_ddp_worker, args=(2, _free_port(), [2, 1], 1, out), nprocs=2, join=True)
    got = torch.load(out, weights_only=True)
    # DDP averages over the 2 workers; the global-batch normalisers are per-worker averages, so the
    # averaged gradient is the global batch's
    assert got.keys() == ref.keys() and len(got) > 50
    for name in got:
        _close(got[name], ref[name], name)
