"""Prepare the real datasets from their official downloads into the layouts of ``docs/DATA_LAYOUT.md``.

``python -m vloss.data.prepare {ade20k,coco,objects365,lvis} --src DOWNLOAD_ROOT --out DATA_ROOT``
(:mod:`vloss.data.prepare.__main__`), one module per dataset:

* :mod:`~vloss.data.prepare.ade20k`: ADEChallengeData2016 + the instance release -> ADE20K-150
  panoptic (Mask2Former's conversion), ``ade20k_panoptic/``;
* :mod:`~vloss.data.prepare.coco`: COCO 2017 panoptic, captions, instances, checked and linked
  into ``coco_panoptic/``;
* :mod:`~vloss.data.prepare.objects365`: Objects365 v2 train -> ``objects365/``;
* :mod:`~vloss.data.prepare.lvis`: LVIS v1 val over COCO 2017 images -> ``lvis/``.

Every output is written atomically and every run is resumable (:mod:`~vloss.data.prepare.common`);
each run ends with a summary of counts beside what the official release gives. Nothing here
imports Ray or ``pipelines``.
"""

from __future__ import annotations

# dataset -> (module, its splits)
DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ade20k": ("vloss.data.prepare.ade20k", ("val", "train")),
    "coco": ("vloss.data.prepare.coco", ("train", "val")),
    "objects365": ("vloss.data.prepare.objects365", ("train",)),
    "lvis": ("vloss.data.prepare.lvis", ("val",)),
}
