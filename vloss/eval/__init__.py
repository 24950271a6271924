"""Scorers (PQ, LVIS / COCO mask AP), reports and their command line.

``python -m vloss.eval {pq,lvis,coco} ...`` runs a scorer standalone. Heavy imports
(lvis, pycocotools' COCOeval) happen only when the matching function is used.
"""

from vloss.eval.pq import pq_compute
from vloss.eval.pq_stats import PQStat, pq_stats_single

__all__ = ["PQStat", "pq_compute", "pq_stats_single", "lvis_mask_ap", "coco_mask_ap", "write_report"]


def __getattr__(name: str):
    if name == "lvis_mask_ap":
        from vloss.eval.lvis_eval import lvis_mask_ap
        return lvis_mask_ap
    if name == "coco_mask_ap":
        from vloss.eval.coco_eval import coco_mask_ap
        return coco_mask_ap
    if name == "write_report":
        from vloss.eval.report import write_report
        return write_report
    raise AttributeError(f"module 'vloss.eval' has no attribute {name!r}")
