"""Hungarian matcher: optimal against brute force, cost formula, empty / square cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from vloss.losses import HungarianMatcher, point_sample


def _problem(seed: int, q: int, m: int, c: int = 5, size: int = 8):
    g = torch.Generator().manual_seed(seed)
    outputs = {"pred_logits": torch.randn(1, q, c + 1, generator=g),
               "pred_masks": torch.randn(1, q, size, size, generator=g) * 3}
    target = {"labels": torch.randint(0, c, (m,), generator=g),
              "masks": torch.rand(m, 2 * size, 2 * size, generator=g) > 0.5}
    return outputs, [target]


def _brute_force(cost: torch.Tensor) -> float:
    """Minimum total cost over every injective assignment of the smaller side."""
    q, m = cost.shape
    best = math.inf
    if m <= q:
        for rows in itertools.permutations(range(q), m):
            best = min(best, sum(float(cost[r, j]) for j, r in enumerate(rows)))
    else:
        for cols in itertools.permutations(range(m), q):
            best = min(best, sum(float(cost[i, c]) for i, c in enumerate(cols)))
    return best


@pytest.mark.parametrize("seed,q,m", [(0, 6, 4), (1, 5, 3), (2, 4, 4), (3, 6, 1), (4, 3, 4), (5, 6, 2)])
def test_assignment_is_optimal_against_brute_force(seed, q, m):
    outputs, targets = _problem(seed, q, m)
    matcher = HungarianMatcher(num_points=256)
    cost = matcher.cost_matrix(outputs["pred_logits"][0], outputs["pred_masks"][0], targets[0]["labels"],
                               targets[0]["masks"], generator=torch.Generator().manual_seed(7))
    ((rows, cols),) = matcher(outputs, targets, generator=torch.Generator().manual_seed(7))
    assert rows.dtype == torch.int64 and cols.dtype == torch.int64
    assert len(rows) == min(q, m) and len(set(rows.tolist())) == len(rows) and len(set(cols.tolist())) == len(cols)
    hungarian = float(cost[rows, cols].sum())
    assert hungarian == pytest.approx(_brute_force(cost), abs=1e-5)
    # the optimum is unique on continuous random costs: compare the assignment itself
    q_, m_ = cost.shape
    perms = (itertools.permutations(range(q_), m_) if m_ <= q_ else None)
    if perms is not None:
        best = min(perms, key=lambda rs: sum(float(cost[r, j]) for j, r in enumerate(rs)))
        assert sorted(zip(rows.tolist(), cols.tolist())) == sorted((r, j) for j, r in enumerate(best))


def test_cost_matrix_matches_formula_on_explicit_points():
    outputs, targets = _problem(11, 4, 3)
    matcher = HungarianMatcher(cost_class=2.0, cost_bce=5.0, cost_dice=5.0, num_points=64)
    cost = matcher.cost_matrix(outputs["pred_logits"][0], outputs["pred_masks"][0], targets[0]["labels"],
                               targets[0]["masks"], generator=torch.Generator().manual_seed(3))
    pts = torch.rand(1, 64, 2, generator=torch.Generator().manual_seed(3))  # same draw as the matcher
    probs = outputs["pred_logits"][0].softmax(-1)
    for q in range(4):
        x = point_sample(outputs["pred_masks"][0, q][None, None], pts, align_corners=False,
                         padding_mode="border").flatten()
        for m in range(3):
            t = point_sample(targets[0]["masks"][m].float()[None, None], pts, align_corners=False,
                             padding_mode="border").flatten()
            bce = F.binary_cross_entropy_with_logits(x, t)
            p = x.sigmoid()
            dice = 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)
            expected = -2.0 * probs[q, targets[0]["labels"][m]] + 5.0 * bce + 5.0 * dice
            assert float(cost[q, m]) == pytest.approx(float(expected), rel=1e-5, abs=1e-5)


def test_empty_targets_and_batch():
    outputs, _ = _problem(0, 5, 0)
    outputs = {k: torch.cat([v, v]) for k, v in outputs.items()}
    empty = {"labels": torch.zeros(0, dtype=torch.int64), "masks": torch.zeros(0, 16, 16, dtype=torch.bool)}
    full = {"labels": torch.tensor([1, 0]), "masks": torch.rand(2, 16, 16) > 0.5}
    res = HungarianMatcher(num_points=32)(outputs, [empty, full])
    assert res[0][0].numel() == 0 and res[0][1].numel() == 0
    assert res[0][0].dtype == torch.int64
    assert len(res[1][0]) == 2


def test_square_problem_and_exact_masks_are_recovered():
    """M == Q with targets equal to (binarised) predictions: the identity permutation wins."""
    q = 4
    g = torch.Generator().manual_seed(5)
    masks = torch.zeros(q, 16, 16, dtype=torch.bool)
    for i in range(q):  # four disjoint quadrants
        masks[i, (i // 2) * 8:(i // 2 + 1) * 8, (i % 2) * 8:(i % 2 + 1) * 8] = True
    perm = torch.randperm(q, generator=g)
    labels = torch.tensor([0, 1, 2, 3])
    logits = torch.full((1, q, 5), -5.0)
    logits[0, torch.arange(q), labels[perm]] = 5.0  # query i predicts target perm[i]'s class
    outputs = {"pred_logits": logits, "pred_masks": (masks[perm].float() * 20 - 10)[None]}
    ((rows, cols),) = HungarianMatcher(num_points=128)(outputs, [{"labels": labels, "masks": masks}])
    assert rows.tolist() == [0, 1, 2, 3]
    assert cols.tolist() == perm.tolist()


def test_bad_labels_name_the_field():
    outputs, targets = _problem(0, 3, 2, c=4)
    targets[0]["labels"] = torch.tensor([0, 4])
    with pytest.raises(ValueError, match="target 0 field 'labels'"):
        HungarianMatcher(num_points=16)(outputs, targets)
    targets[0]["labels"] = torch.tensor([0, 1])
    targets[0]["masks"] = targets[0]["masks"][:1]
    with pytest.raises(ValueError, match="field 'masks'"):
        HungarianMatcher(num_points=16)(outputs, targets)
