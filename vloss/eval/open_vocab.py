"""Open-vocabulary breakdowns: PQ over a subset of classes (seen / unseen by training).

COCO panoptic averages PQ over the categories that occur (``TP + FP + FN > 0``); a subset's
PQ, PQ^th and PQ^st are the same averages taken over the subset's categories only, from the
per-class statistics :func:`vloss.eval.pq.pq_compute` returns. (Mask AP over a subset is
:func:`vloss.eval.lvis_eval.lvis_mask_ap` with ``cat_ids``.)
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping


def subset_pq(per_class: Mapping[str, Mapping[str, Any]], classes: Iterable[str],
              things: Iterable[str]) -> dict[str, Any]:
    """PQ, SQ, RQ, PQ^th and PQ^st over ``classes``.

    Args:
        per_class: class name -> ``{"pq", "sq", "rq", "tp", "fp", "fn"}`` (``pq_compute``'s ``per_class``).
        classes: the subset's class names (names absent from ``per_class`` do not occur).
        things: the names of thing classes (the rest are stuff).

    Returns:
        ``{"pq", "sq", "rq", "n", "pq_th", "n_th", "pq_st", "n_st"}``: averages in [0, 1] over the
        subset's classes that occur, ``None`` where none does.
    """
    things = set(things)
    occurring = [c for c in dict.fromkeys(classes) if c in per_class
                 and per_class[c]["tp"] + per_class[c]["fp"] + per_class[c]["fn"] > 0]

    def mean(names: list[str], key: str) -> float | None:
        return sum(float(per_class[c][key]) for c in names) / len(names) if names else None

    th = [c for c in occurring if c in things]
    st = [c for c in occurring if c not in things]
    return {"pq": mean(occurring, "pq"), "sq": mean(occurring, "sq"), "rq": mean(occurring, "rq"),
            "n": len(occurring), "pq_th": mean(th, "pq"), "n_th": len(th), "pq_st": mean(st, "pq"),
            "n_st": len(st)}
