"""Evaluation reports: ``metrics.json`` plus a ``report.md`` laid out like the paper's tables.

Table 1 of the paper (ADE20K panoptic) and Table 2 (LVIS v1 val / minival) are reproduced
with their published rows, each marked "(published)", and this run's row beside them.
``metrics.json`` keeps fractions in [0, 1]; the Markdown shows the paper's units
(percent; PQ with three decimals as Table 1, AP with one as Table 2).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

PANOPTIC_COLUMNS = ("Method", "Visual Enc", "Text Enc", "Params", "Proposal", "PQ^all", "PQ^th", "PQ^st")
LVIS_COLUMNS = ("Method", "Visual Enc", "Text Enc", "Params", "Proposal",
                "AP", "AP50", "AP75", "APr", "APc", "APf")


@dataclass(frozen=True)
class PublishedRow:
    """One row of a table as printed in the paper (numbers in percent, ``None`` = "-")."""

    method: str
    visual_enc: str
    text_enc: str
    params: str
    proposal: bool
    values: tuple[float | None, ...]


# Table 1: ADE20K panoptic (PQ^all, PQ^th, PQ^st).
PAPER_TABLE1_ADE20K = (
    PublishedRow("CLIP baseline", "CLIP ViT-L", "CLIP Text", "472.39M", True, (8.207, 8.473, 7.675)),
    PublishedRow("Mask2Former+CLIP", "Swin-T", "CLIP Text", "110.97M", False, (11.003, 8.932, 15.144)),
    PublishedRow("MaskCLIP (Mask R-CNN)", "CLIP ViT-L", "CLIP Text", "472.39M", True, (12.860, 11.242, 16.095)),
    PublishedRow("MaskCLIP", "CLIP ViT-L", "CLIP Text", "472.03M", True, (15.121, 13.536, 18.290)),
    PublishedRow("VLOSS", "Swin-T", "CLIP Text", "156.69M", False, (15.371, 13.959, 18.195)),
)

# Table 2: LVIS v1 (AP, AP50, AP75, APr, APc, APf), val and minival blocks.
PAPER_TABLE2_LVIS_VAL = (
    PublishedRow("CLIP baseline", "CLIP ViT-L", "CLIP Text", "472.39M", True, (5.0, 7.2, 5.2, None, None, None)),
    PublishedRow("Mask2Former+CLIP", "Swin-T", "CLIP Text", "110.97M", False, (5.3, 7.8, 5.6, 2.1, 3.1, 9.1)),
    PublishedRow("MaskCLIP (Mask R-CNN)", "CLIP ViT-L", "CLIP Text", "472.39M", True,
                 (6.4, 12.8, 5.8, None, None, None)),
    PublishedRow("MaskCLIP", "CLIP ViT-L", "CLIP Text", "472.03M", True, (8.4, 12.2, 8.8, None, None, None)),
    PublishedRow("VLOSS", "Swin-T", "CLIP Text", "156.69M", False, (10.2, 15.8, 10.6, 4.4, 8.1, 15.0)),
)
PAPER_TABLE2_LVIS_MINIVAL = (
    PublishedRow("Mask2Former+CLIP", "Swin-T", "CLIP Text", "110.97M", False, (8.3, 12.7, 8.6, 3.9, 5.4, 11.6)),
    PublishedRow("VLOSS", "Swin-T", "CLIP Text", "156.69M", False, (13.8, 20.7, 14.7, 8.1, 12.3, 16.2)),
)

# task -> (columns, published rows, title)
TASKS: dict[str, tuple[tuple[str, ...], tuple[PublishedRow, ...], str]] = {
    "ade20k_panoptic": (PANOPTIC_COLUMNS, PAPER_TABLE1_ADE20K, "ADE20K panoptic (paper Table 1)"),
    "coco_panoptic": (PANOPTIC_COLUMNS, (), "COCO panoptic (no published table in the paper)"),
    "lvis": (LVIS_COLUMNS, PAPER_TABLE2_LVIS_VAL, "LVIS v1 val (paper Table 2)"),
    "lvis_minival": (LVIS_COLUMNS, PAPER_TABLE2_LVIS_MINIVAL, "LVIS v1 minival (paper Table 2)"),
    "coco_instances": (LVIS_COLUMNS, (), "COCO instance mask AP (no published table in the paper)"),
}


def checkpoint_sha256(path: str | Path | None) -> str | None:
    """SHA-256 of a checkpoint file; for a directory (a Ray checkpoint), of its files.

    A directory digest covers every regular file's relative path and bytes, in sorted
    order, so it changes when any file changes.

    Args:
        path: the checkpoint file or directory; ``None`` gives ``None``.
    """
    if path is None:
        return None
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_params(params: int | None) -> str:
    """Parameter count as the paper writes it (``156.69M``)."""
    return "-" if params is None else f"{params / 1e6:.2f}M"


def our_values(task: str, metrics: dict) -> tuple[float | None, ...]:
    """This run's table values in percent, from metrics in [0, 1].

    Args:
        task: a key of :data:`TASKS`.
        metrics: PQ output (``All``/``Things``/``Stuff``) or AP output (``AP``...).
    """
    def pct(v: Any) -> float | None:
        return None if v is None else 100.0 * float(v)

    columns = TASKS[task][0]
    if columns is PANOPTIC_COLUMNS:
        return tuple(pct(metrics.get(group, {}).get("pq")) for group in ("All", "Things", "Stuff"))
    return tuple(pct(metrics.get(k)) for k in ("AP", "AP50", "AP75", "APr", "APc", "APf"))


def _header(columns) -> list[str]:
    return ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]


def published_table(task: str) -> str:
    """The paper's published rows of ``task``'s table alone (empty string when it has none)."""
    columns, published, _ = TASKS[task]
    if not published:
        return ""
    digits = 3 if columns is PANOPTIC_COLUMNS else 1
    lines = _header(columns)
    for row in published:
        cells = [f"{row.method} (published)", row.visual_enc, row.text_enc, row.params,
                 "✓" if row.proposal else "-"] + [_fmt(v, digits) for v in row.values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_table(task: str, metrics: dict, *, params: int | None, method: str = "VLOSS (this run)",
                 visual_enc: str = "Swin-T", text_enc: str = "CLIP Text", with_published: bool = True) -> str:
    """The Markdown table for ``task``: published rows (unless ``with_published`` is false), then this run's row.

    Args:
        task: a key of :data:`TASKS`.
        metrics: scorer output in [0, 1].
        params: this model's parameter count.
        method, visual_enc, text_enc: labels of this run's row.
        with_published: put the paper's rows above this run's (only when the data is the real
            benchmark; a synthetic-world score is not comparable).
    """
    columns = TASKS[task][0]
    digits = 3 if columns is PANOPTIC_COLUMNS else 1
    pub = published_table(task) if with_published else ""
    lines = pub.split("\n") if pub else _header(columns)
    ours = [f"**{method}**", visual_enc, text_enc, format_params(params), "-"]
    ours += [_fmt(v, digits) for v in our_values(task, metrics)]
    lines.append("| " + " | ".join(ours) + " |")
    return "\n".join(lines)


def write_report(out_dir: str | Path, task: str, metrics: dict, config: dict,
                 checkpoint_path: str | Path | None, params: int | None,
                 overlays: Sequence[str | Path] = (), *, method: str = "VLOSS (this run)",
                 visual_enc: str = "Swin-T", text_enc: str = "CLIP Text", synthetic: bool = False) -> Path:
    """Write ``metrics.json`` and ``report.md`` into ``out_dir``; return the report path.

    ``metrics.json`` is ``{"task", "metrics", "params", "checkpoint": {"path", "sha256"},
    "config", "created"}`` with metrics exactly as the scorer returned them ([0, 1]).

    Args:
        out_dir: output folder (created).
        task: one of ``ade20k_panoptic``, ``coco_panoptic``, ``lvis``, ``lvis_minival``,
            ``coco_instances``.
        metrics: scorer output (:func:`~vloss.eval.pq.pq_compute` or the AP scorers).
        config: the resolved configuration (JSON-serialisable; other values are
            written with ``str``).
        checkpoint_path: the evaluated checkpoint (file or directory), hashed.
        params: the model's parameter count.
        overlays: overlay images to show (linked relative to ``out_dir``).
        method, visual_enc, text_enc: labels of this run's table row.
        synthetic: the data is the generated synthetic world: the title says so and the paper's
            rows go to a separate "published, real data, not comparable" table.
    """
    if task not in TASKS:
        raise ValueError(f"unknown report task {task!r}; expected one of {sorted(TASKS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sha = checkpoint_sha256(checkpoint_path)
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    record = {"task": task, "metrics": metrics, "params": params,
              "checkpoint": {"path": None if checkpoint_path is None else str(checkpoint_path), "sha256": sha},
              "config": config, "created": created}
    (out_dir / "metrics.json").write_text(json.dumps(record, indent=2, default=str) + "\n")

    title = TASKS[task][2]
    heading = f"# VLOSS evaluation on the synthetic world: {title.split(' (')[0]}-style val" if synthetic \
        else f"# VLOSS evaluation: {title}"
    parts = [heading, "",
             f"- created: {created}",
             f"- checkpoint: `{checkpoint_path}`",
             f"- checkpoint sha256: `{sha}`",
             f"- parameters: {format_params(params)} ({params if params is not None else '-'})", "",
             "## Results", ""]
    if synthetic:
        parts += ["Numbers in percent, on the generated synthetic world (not the real benchmark). "
                  "`metrics.json` holds the same numbers as fractions in [0, 1].", "",
                  render_table(task, metrics, params=params, method=method, visual_enc=visual_enc,
                               text_enc=text_enc, with_published=False), ""]
        pub = published_table(task)
        if pub:
            parts += ["### Published, real data, not comparable", "",
                      f"The paper's rows for the real {title}; a synthetic-world score says nothing about them.",
                      "", pub, ""]
    else:
        parts += ["Numbers in percent. Rows marked (published) are copied from the paper; the last row "
                  "is this run. `metrics.json` holds the same numbers as fractions in [0, 1].", "",
                  render_table(task, metrics, params=params, method=method, visual_enc=visual_enc,
                               text_enc=text_enc), ""]
    extra = {k: v for k, v in metrics.items() if k == "results"}
    if extra:
        parts += ["Result file checks: `" + json.dumps(extra["results"]) + "`", ""]
    if overlays:
        parts += ["## Overlays", ""]
        for p in overlays:
            rel = os.path.relpath(Path(p).resolve(), out_dir.resolve())
            parts.append(f"![{Path(p).stem}]({rel})")
        parts.append("")
    parts += ["## Resolved config", "", "```json", json.dumps(config, indent=2, default=str), "```", ""]
    report = out_dir / "report.md"
    report.write_text("\n".join(parts))
    return report
