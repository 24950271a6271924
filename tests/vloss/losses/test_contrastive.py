"""Contrastive losses: Eq. 5 by direct loops, FILIP by loops, gathering across 2 gloo processes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.multiprocessing as mp

from vloss.losses import (
    ContrastiveLoss,
    LossConfig,
    average_num_masks,
    clip_contrastive_loss,
    filip_contrastive_loss,
)


def _eq5_loop(img: torch.Tensor, txt: torch.Tensor, scale: float) -> float:
    """Eq. 4-5 written out with Python loops in float64."""
    b = img.shape[0]
    img, txt = img.double(), txt.double()

    def cos(u, v):
        return float(u @ v) / (float(u.norm()) * float(v.norm()))

    s = [[cos(img[i], txt[j]) * scale for j in range(b)] for i in range(b)]
    total = 0.0
    for i in range(b):
        row = sum(math.exp(s[i][j]) for j in range(b))
        col = sum(math.exp(s[j][i]) for j in range(b))
        total += math.log(math.exp(s[i][i]) / row) + math.log(math.exp(s[i][i]) / col)
    return -total / (2 * b)


def _filip_loop(xi, mi, yt, mt, scale: float) -> float:
    """Token-wise similarity (FILIP) and the symmetric InfoNCE, with loops in float64."""
    b = xi.shape[0]
    xi, yt = xi.double(), yt.double()

    def cos(u, v):
        return float(u @ v) / (float(u.norm()) * float(v.norm()))

    s_i2t = [[0.0] * b for _ in range(b)]
    s_t2i = [[0.0] * b for _ in range(b)]
    for i in range(b):
        for j in range(b):
            img_tok = [k for k in range(xi.shape[1]) if mi[i, k]]
            txt_tok = [r for r in range(yt.shape[1]) if mt[j, r]]
            s_i2t[i][j] = sum(max(cos(xi[i, k], yt[j, r]) for r in txt_tok) for k in img_tok) / len(img_tok)
            s_t2i[i][j] = sum(max(cos(xi[i, k], yt[j, r]) for k in img_tok) for r in txt_tok) / len(txt_tok)
    total = 0.0
    for i in range(b):
        total += -math.log(math.exp(scale * s_i2t[i][i]) / sum(math.exp(scale * s_i2t[i][j]) for j in range(b)))
        total += -math.log(math.exp(scale * s_t2i[i][i]) / sum(math.exp(scale * s_t2i[j][i]) for j in range(b)))
    return total / (2 * b)


def test_clip_loss_equals_eq5_loop():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    for scale in (1.0, 14.3):
        assert clip_contrastive_loss(img, txt, scale).item() == pytest.approx(_eq5_loop(img, txt, scale), rel=1e-5)


def test_clip_loss_gradient_reaches_embeddings_and_learnable_scale():
    g = torch.Generator().manual_seed(1)
    img = torch.randn(4, 6, generator=g, requires_grad=True)
    txt = torch.randn(4, 6, generator=g, requires_grad=True)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    clip_contrastive_loss(img, txt, log_scale.exp()).backward()
    assert img.grad.abs().sum() > 0 and txt.grad.abs().sum() > 0 and log_scale.grad.abs() > 0
    with pytest.raises(ValueError, match="must both be"):
        clip_contrastive_loss(img, txt[:3], 1.0)


def test_filip_loss_equals_loop_with_masks():
    g = torch.Generator().manual_seed(2)
    b, ni, lt, d = 3, 5, 4, 6
    xi, yt = torch.randn(b, ni, d, generator=g), torch.randn(b, lt, d, generator=g)
    mi = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    mt = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    got = filip_contrastive_loss(xi, mi, yt, mt, 5.0).item()
    assert got == pytest.approx(_filip_loop(xi, mi, yt, mt, 5.0), rel=1e-5)
    # chunking over images must not change the result
    from vloss.losses import filip_similarity
    a = filip_similarity(xi, mi, yt, mt, chunk=1)
    b2 = filip_similarity(xi, mi, yt, mt, chunk=64)
    assert torch.allclose(a[0], b2[0]) and torch.allclose(a[1], b2[1])


def test_contrastive_module_dispatch():
    g = torch.Generator().manual_seed(3)
    img, txt = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    loss = ContrastiveLoss.from_config(LossConfig())(img, txt, 10.0)  # gather on, no group: local
    assert loss["loss_con"].item() == pytest.approx(clip_contrastive_loss(img, txt, 10.0).item())
    fl = ContrastiveLoss.from_config(LossConfig(contrastive="filip"))
    tok_i, tok_t = torch.randn(4, 3, 8, generator=g), torch.randn(4, 2, 8, generator=g)
    assert fl(tok_i, tok_t, 10.0)["loss_con"].item() == pytest.approx(
        filip_contrastive_loss(tok_i, None, tok_t, None, 10.0).item())


# --------------------------------------------------------------------------- two processes
WORLD, LOCAL_B, DIM = 2, 3, 8


def _global_batch():
    g = torch.Generator().manual_seed(42)
    return (torch.randn(WORLD * LOCAL_B, DIM, generator=g), torch.randn(WORLD * LOCAL_B, DIM, generator=g),
            torch.randn(WORLD * LOCAL_B, 4, DIM, generator=g), torch.randn(WORLD * LOCAL_B, 3, DIM, generator=g))


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        img, txt, tok_i, tok_t = _global_batch()
        sl = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        result = {}
        for with_grad in (True, False):
            li = img[sl].clone().requires_grad_()
            lt = txt[sl].clone().requires_grad_()
            loss = clip_contrastive_loss(li, lt, 7.0, gather=True, gather_with_grad=with_grad)
            loss.backward()
            result[f"clip_{with_grad}"] = (loss.detach(), li.grad, lt.grad)
        ti = tok_i[sl].clone().requires_grad_()
        mask_i = torch.ones(LOCAL_B, 4, dtype=torch.bool)
        mask_i[:, 3] = rank == 0  # rank 1 has a padded last token
        loss = filip_contrastive_loss(ti, mask_i, tok_t[sl], None, 7.0, gather=True)
        loss.backward()
        result["filip"] = (loss.detach(), ti.grad)
        result["num_masks"] = average_num_masks(3 if rank == 0 else 6)
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gathered_loss_across_two_processes_equals_global_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    img, txt, tok_i, tok_t = _global_batch()
    gi, gt = img.clone().requires_grad_(), txt.clone().requires_grad_()
    ref = clip_contrastive_loss(gi, gt, 7.0)
    ref.backward()
    fi = tok_i.clone().requires_grad_()
    mask_i = torch.ones(WORLD * LOCAL_B, 4, dtype=torch.bool)
    mask_i[LOCAL_B:, 3] = False
    ref_f = filip_contrastive_loss(fi, mask_i, tok_t, None, 7.0)
    ref_f.backward()
    for r in range(WORLD):
        sl = slice(r * LOCAL_B, (r + 1) * LOCAL_B)
        for with_grad, factor in ((True, WORLD), (False, 1)):
            loss, g_img, g_txt = res[r][f"clip_{with_grad}"]
            assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
            # differentiable gather: gradients of all ranks' (identical) losses are summed, so the
            # local shard gets WORLD x the global-loss gradient (DDP's averaging then restores it);
            # without: only this rank's own loss reaches its shard
            assert torch.allclose(g_img, factor * gi.grad[sl], atol=1e-6)
            assert torch.allclose(g_txt, factor * gt.grad[sl], atol=1e-6)
        loss_f, g_tok = res[r]["filip"]
        assert loss_f.item() == pytest.approx(ref_f.item(), rel=1e-5)
        assert torch.allclose(g_tok, WORLD * fi.grad[sl], atol=1e-6)
        assert res[r]["num_masks"] == pytest.approx(4.5)
