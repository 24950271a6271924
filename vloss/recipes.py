"""Every row of the paper's Tables 1 and 3-6 that this system can train, as a named recipe.

A recipe is a network preset plus ``--set`` overrides of the training recipe
(:class:`vloss.config.TrainJobConfig`), with the row's published numbers for comparison. The
overrides name every switch the row depends on (encoder kind, global query, schedule, caption
ratio, positive-only L_cls, contrastive loss), so the same overrides applied to the ``tiny``
network give a CPU-sized version of the row (:func:`build_recipe` with ``network="tiny"``).

Where the paper is silent, the choice is written beside the row (``note``) and in
``docs/REPRODUCE.md``:

* Table 3 rows 2-5 use the VLOSS network (FPN-style encoder, global image query): the table's
  last row is Table 1's VLOSS, and Sec. 3.4 says the training strategy is studied "after
  improving the network architecture". Row 1 is Table 1's Mask2Former+CLIP (deformable encoder,
  no global query). ``--set model.encoder.kind=deform`` gives the other reading.
* Table 4 "w/ Mixing" mixes COCO panoptic and Objects365 batches at random in every epoch, without
  captions: its published PQ (10.225) equals Table 3's "+pos L_cls" row, which has no L_con, so the
  row is read as that run (Fig. 3 (left) also draws captions; ``--set train.caption_ratio=0.5`` adds them).
* Table 4 "w/ Pretrain": 12 detection (+ image-text) epochs, then a 12-epoch panoptic (+ image-text)
  fine-tune with its own LR schedule (x0.1 at epochs 8 and 11 of the fine-tune); the paper does not
  state the pretraining length, 12 epochs is the standard 1x schedule.
* Tables 5 and 6 train on COCO panoptic + COCO Captions only (their text says so): the
  ``panoptic`` schedule with captions, and the global image query for L_con.

Rows of other systems (Table 1's CLIP baseline and MaskCLIP, which use CLIP ViT-L and external
proposals) are not recipes of this system; :data:`OTHER_ROWS` lists them for the documentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vloss.config import TrainJobConfig, job_preset
from vloss.config_io import apply_overrides

_M2F = ("model.encoder.kind=deform", "model.decoder.global_query=false")
_VLOSS_NET = ("model.encoder.kind=fpn_style", "model.decoder.global_query=true")
_NO_CAPTIONS = ("train.caption_ratio=0",)
_CAPTIONS = ("train.caption_ratio=0.5",)


@dataclass(frozen=True)
class Recipe:
    """One row of a paper table as a training recipe.

    Args:
        name: the recipe's name (``--recipe NAME``).
        table: the table it reproduces (``"Table 3"``).
        row: the row's label as printed.
        changes: what the row changes, in words.
        network: network preset at paper scale (``paper`` or ``baseline``).
        overrides: ``--set`` overrides applied on top of the preset.
        published: the row's published numbers (percent), by column.
        data: training data kinds it draws from.
        note: the choice made where the paper is silent, if any.
    """

    name: str
    table: str
    row: str
    changes: str
    network: str
    overrides: tuple[str, ...]
    published: dict[str, float] = field(default_factory=dict)
    data: tuple[str, ...] = ("coco_panoptic", "objects365", "coco_captions")
    note: str = ""


def _pq(all_: float, th: float, st: float | None = None) -> dict[str, float]:
    out = {"PQ^all": all_, "PQ^th": th}
    if st is not None:
        out["PQ^st"] = st
    return out


_VLOSS_ROW = _VLOSS_NET + ("train.schedule=stt", "loss.positive_only_detection=true", "loss.contrastive=clip") \
    + _CAPTIONS
_M2F_ROW = _M2F + ("train.schedule=panoptic",) + _NO_CAPTIONS
_PANOPTIC_CAPTIONS = ("train.schedule=panoptic",) + _CAPTIONS
_COCO_ONLY = ("coco_panoptic", "coco_captions")
_T3_NOTE = "Table 3 rows 2-5 use the VLOSS network (FPN-style encoder + global query); see the module docstring"

RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("t1_mask2former_clip", "Table 1", "Mask2Former+CLIP",
           "Mask2Former (deformable encoder, no global query) with the CLIP text encoder, COCO panoptic only",
           "baseline", _M2F_ROW, _pq(11.003, 8.932, 15.144), ("coco_panoptic",)),
    Recipe("t1_vloss", "Table 1", "VLOSS",
           "FPN-style encoder, global image query, O365 pseudo masks with positive-only L_cls, STT, L_con",
           "paper", _VLOSS_ROW, _pq(15.371, 13.959, 18.195)),
    Recipe("t3_mask2former", "Table 3", "Mask2Former",
           "row 1: the Mask2Former+CLIP baseline (same run as Table 1's)",
           "baseline", _M2F_ROW, _pq(11.003, 8.932), ("coco_panoptic",)),
    Recipe("t3_o365", "Table 3", "+ O365",
           "adds Objects365 (pseudo masks) mixed into every epoch; L_cls over all queries; no L_con",
           "paper", _VLOSS_NET + ("train.schedule=mix", "loss.positive_only_detection=false") + _NO_CAPTIONS,
           _pq(9.816, 10.641), ("coco_panoptic", "objects365"), _T3_NOTE),
    Recipe("t3_pos_cls", "Table 3", "+ pos L_cls",
           "detection batches compute L_cls on matched queries only", "paper",
           _VLOSS_NET + ("train.schedule=mix", "loss.positive_only_detection=true") + _NO_CAPTIONS,
           _pq(10.225, 10.823), ("coco_panoptic", "objects365"), _T3_NOTE),
    Recipe("t3_stt", "Table 3", "+ STT",
           "switchable training: warmup sub-epoch (detection) then cooldown (panoptic)", "paper",
           _VLOSS_NET + ("train.schedule=stt", "loss.positive_only_detection=true") + _NO_CAPTIONS,
           _pq(13.761, 13.435), ("coco_panoptic", "objects365"), _T3_NOTE),
    Recipe("t3_vloss", "Table 3", "+ L_con",
           "adds COCO Captions and the image-text contrastive loss: the full VLOSS (same run as Table 1's)",
           "paper", _VLOSS_ROW, _pq(15.371, 13.959), note=_T3_NOTE),
    Recipe("t4_mixing", "Table 4", "w/ Mixing",
           "COCO panoptic and Objects365 batches mixed at random in every epoch (Fig. 3 left)", "paper",
           _VLOSS_NET + ("train.schedule=mix", "loss.positive_only_detection=true") + _NO_CAPTIONS,
           {"PQ^all": 10.225}, ("coco_panoptic", "objects365"),
           note="no captions: its published 10.225 is Table 3's '+ pos L_cls' row, which trains without them"),
    Recipe("t4_pretrain", "Table 4", "w/ Pretrain",
           "detection (+ image-text) pretraining, then a panoptic (+ image-text) fine-tune with its own LR "
           "schedule", "paper",
           _VLOSS_NET + ("train.schedule=pretrain", "train.epochs=24", "train.pretrain_epochs=12",
                         "loss.positive_only_detection=true") + _CAPTIONS,
           {"PQ^all": 13.914}, note="12 pretraining epochs (the paper does not state its length)"),
    Recipe("t4_stt", "Table 4", "w/ STT", "the full VLOSS (same run as Table 1's)", "paper", _VLOSS_ROW,
           {"PQ^all": 15.371}),
    Recipe("t5_deform", "Table 5", "w/ Deform Encoder",
           "deformable encoder; COCO panoptic + COCO Captions only", "paper",
           ("model.encoder.kind=deform", "model.encoder.ffn_dim=1024", "model.decoder.global_query=true")
           + _PANOPTIC_CAPTIONS,
           _pq(11.865, 8.851, 17.895), _COCO_ONLY),
    Recipe("t5_fpn", "Table 5", "w/ FPN Encoder",
           "plain FPN encoder (convolutions only); COCO panoptic + COCO Captions only", "paper",
           ("model.encoder.kind=fpn", "model.decoder.global_query=true") + _PANOPTIC_CAPTIONS,
           _pq(11.169, 8.218, 17.071), _COCO_ONLY),
    Recipe("t5_fpn_style", "Table 5", "w/ FPN-style Encoder",
           "FPN-style encoder (transformer on f0 + FPN); COCO panoptic + COCO Captions only", "paper",
           _VLOSS_NET + _PANOPTIC_CAPTIONS, _pq(12.680, 9.809, 18.421), _COCO_ONLY),
    Recipe("t6_filip", "Table 6", "w/ FILIP",
           "FILIP token-wise contrastive loss instead of CLIP's; COCO panoptic + COCO Captions only", "paper",
           _VLOSS_NET + _PANOPTIC_CAPTIONS + ("loss.contrastive=filip",), _pq(10.669, 8.246, 15.515), _COCO_ONLY),
    Recipe("t6_clip", "Table 6", "w/ CLIP",
           "CLIP contrastive loss (same run as Table 5's FPN-style row)", "paper",
           _VLOSS_NET + _PANOPTIC_CAPTIONS + ("loss.contrastive=clip",), _pq(12.680, 9.809, 18.421), _COCO_ONLY),
)}

# rows of the paper's tables that are other systems, not recipes of this one
OTHER_ROWS = (
    ("Table 1", "CLIP baseline", "CLIP ViT-L image encoder over external proposal masks"),
    ("Table 1", "MaskCLIP (Mask R-CNN)", "MaskCLIP with Mask R-CNN proposals and CLIP ViT-L"),
    ("Table 1", "MaskCLIP", "MaskCLIP with its own proposals and CLIP ViT-L"),
)


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {', '.join(RECIPES)} (python -m jobs.train --list-recipes)")
    return RECIPES[name]


def build_recipe(name: str, network: str | None = None, overrides: list[str] | None = None) -> TrainJobConfig:
    """The training config of a recipe.

    Args:
        name: a key of :data:`RECIPES`.
        network: the network preset to start from (default: the recipe's own, ``paper`` or
            ``baseline``); ``tiny`` gives the CPU-sized version of the row.
        overrides: further ``--set`` overrides, applied after the recipe's.
    """
    recipe = get_recipe(name)
    cfg = apply_overrides(job_preset(network or recipe.network), list(recipe.overrides) + list(overrides or []))
    cfg.check()
    return cfg


def recipe_table() -> str:
    """The recipe list as printed by ``--list-recipes``: name, table, row, what it changes."""
    width = max(len(n) for n in RECIPES)
    lines = [f"{'recipe'.ljust(width)}  table    row                       what it changes"]
    for r in RECIPES.values():
        lines.append(f"{r.name.ljust(width)}  {r.table:<8} {r.row:<25} {r.changes}")
    lines.append("")
    lines += [f"not a recipe: {t} {row!r} ({why})" for t, row, why in OTHER_ROWS]
    return "\n".join(lines)
