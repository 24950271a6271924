"""``demo_out/index.html``: the demo's results on one page, readable offline with no server.

The page holds the results tables (all, seen and unseen classes), the validation PQ curve of
the VLOSS run and the loss curve of the tower pretraining as pictures, and a grid of
ADE20K-style val images with the ground truth beside the prediction. Classes that no training
annotation names are marked ``[unseen]`` on both sides, so what the model found of them is
visible. Every picture is a PNG next to the page, linked by a relative path; nothing is fetched
from the network and nothing runs in the page.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vloss.data.masks import rgb2id
from vloss.viz import draw_panoptic_overlay

PAGE = "index.html"
PICTURES = "page"
UNSEEN_MARK = " [unseen]"


def val_pq_curve(run_dir: Path, target: Path) -> Path | None:
    """Draw the validation PQ (all / things / stuff, percent) over training steps from the run's
    ``metrics.jsonl``; None when the run logged no validation."""
    rows = []
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if "val/pq" in row:
                rows.append(row)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    steps = [r["step"] for r in rows]
    for key, label, colour in (("val/pq", "PQ", "#1f77b4"), ("val/pq_th", "PQ^th", "#d62728"),
                               ("val/pq_st", "PQ^st", "#2ca02c")):
        if all(key in r for r in rows):
            ax.plot(steps, [100 * r[key] for r in rows], marker="o", ms=3, color=colour, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("COCO-style val PQ (%)")
    ax.set_title("VLOSS validation")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(target)
    plt.close(fig)
    return target


def _panoptic(png: Path) -> np.ndarray:
    with Image.open(png) as im:
        return rgb2id(np.asarray(im.convert("RGB")))  # [H, W]


def _titled(pic: Image.Image, title: str) -> Image.Image:
    font = ImageFont.load_default()
    out = Image.new("RGB", (pic.width, pic.height + 14), (255, 255, 255))
    out.paste(pic, (0, 14))
    ImageDraw.Draw(out).text((2, 1), title, fill=(0, 0, 0), font=font)
    return out


def comparison_grid(gt_json: Path, gt_dir: Path, images_dir: Path, pred_json: Path, pred_dir: Path,
                    unseen: set[str], target_dir: Path, count: int = 8) -> list[dict[str, Any]]:
    """Ground truth beside prediction for the first ``count`` val images, as PNGs in ``target_dir``.

    Args:
        gt_json, gt_dir: COCO-panoptic ground truth (JSON and PNG folder).
        images_dir: the val images.
        pred_json, pred_dir: the evaluation's panoptic predictions (same format).
        unseen: class names no training annotation names (marked on the pictures).
        target_dir: where the pictures go.
        count: images shown.

    Returns:
        Per image: ``file`` (the PNG's name), ``image_id``, ``unseen_in_truth`` and
        ``unseen_predicted`` (the unseen class names on each side).
    """
    gt = json.loads(gt_json.read_text())
    pred = json.loads(pred_json.read_text())
    names = {c["id"]: c["name"] + (UNSEEN_MARK if c["name"] in unseen else "") for c in gt["categories"]}
    plain = {c["id"]: c["name"] for c in gt["categories"]}
    preds = {a["image_id"]: a for a in pred["annotations"]}
    images = {im["id"]: im for im in gt["images"]}
    target_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for ann in gt["annotations"][:count]:
        im = images[ann["image_id"]]
        with Image.open(images_dir / im["file_name"]) as pic:
            rgb = np.asarray(pic.convert("RGB"))
        truth = draw_panoptic_overlay(rgb, _panoptic(gt_dir / ann["file_name"]),
                                      ann["segments_info"], names)
        p = preds.get(ann["image_id"])
        if p is not None:
            got = draw_panoptic_overlay(rgb, _panoptic(pred_dir / p["file_name"]),
                                        p["segments_info"], names)
        else:
            got = Image.fromarray(rgb)
        left, right = _titled(truth, "ground truth"), _titled(got, "prediction")
        both = Image.new("RGB", (left.width + right.width + 6, left.height), (255, 255, 255))
        both.paste(left, (0, 0))
        both.paste(right, (left.width + 6, 0))
        name = f"ade20k_{ann['image_id']}.png"
        both.save(target_dir / name)
        rows.append({"file": name, "image_id": ann["image_id"],
                     "unseen_in_truth": sorted({plain[s["category_id"]] for s in ann["segments_info"]} & unseen),
                     "unseen_predicted": sorted({plain.get(s["category_id"], "") for s in
                                                 (p or {}).get("segments_info", [])} & unseen)})
    return rows


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _tables(summary: dict[str, Any]) -> str:
    sets = summary["sets"]
    rows = []
    for task, label in (("coco_panoptic", "COCO-style"), ("ade20k_panoptic", "ADE20K-style")):
        e = sets[task]
        rows.append(f"<tr><td>{label}</td>" + "".join(
            f"<td>{_pct(v)}</td>" for v in (e["pq"], e["pq_th"], e["pq_st"], e["seen"]["pq"], e["seen"]["pq_th"],
                                           e["seen"]["pq_st"], e["unseen"]["pq"], e["unseen"]["pq_th"],
                                           e["unseen"]["pq_st"])) + "</tr>")
    pan = ("<table><tr><th>val set</th><th>PQ</th><th>PQ<sup>th</sup></th><th>PQ<sup>st</sup></th>"
           "<th>seen PQ</th><th>seen PQ<sup>th</sup></th><th>seen PQ<sup>st</sup></th><th>unseen PQ</th>"
           "<th>unseen PQ<sup>th</sup></th><th>unseen PQ<sup>st</sup></th></tr>" + "".join(rows) + "</table>")
    e = sets["lvis"]
    lvis = ("<table><tr><th>val set</th><th>AP</th><th>AP<sub>r</sub></th><th>AP<sub>c</sub></th>"
            "<th>AP<sub>f</sub></th><th>seen AP</th><th>unseen AP</th></tr><tr><td>LVIS-style</td>"
            + "".join(f"<td>{_pct(v)}</td>" for v in (e["AP"], e["APr"], e["APc"], e["APf"],
                                                      (e["seen"] or {}).get("AP"), (e["unseen"] or {}).get("AP")))
            + "</tr></table>")
    targets = "".join(f"<li>{html.escape(k)}: {_pct(t['value'])} against {100 * t['target']:.0f} &mdash; "
                      f"{'met' if t['met'] else '<b>missed</b>'}</li>" for k, t in summary.get("targets", {}).items())
    return pan + lvis + (f"<p>Targets (<code>jobs/demo_steps.py</code>):</p><ul>{targets}</ul>" if targets else "")


def write_page(out: str | Path, world: str | Path, summary: dict[str, Any], count: int = 8) -> Path:
    """Write ``OUT/index.html`` and its pictures under ``OUT/page/``.

    Args:
        out: the demo's output folder (holding ``run/``, ``towers/`` and ``eval/``).
        world: the synthetic world the demo ran on.
        summary: the demo's summary (``summary.json``).
        count: val images in the grid.

    Returns:
        The page's path.
    """
    out, world = Path(out), Path(world)
    pics = out / PICTURES
    if pics.exists():
        shutil.rmtree(pics)
    pics.mkdir(parents=True)
    info = json.loads((world / "world.json").read_text())
    unseen = set(info["classes"]["unseen_things"]) | set(info["classes"]["unseen_stuff"])
    paths = info["paths"]["ade20k_panoptic"]
    ev = out / "eval" / "ade20k_panoptic" / "predictions"
    grid = comparison_grid(world / paths["val_json"], world / paths["val_png_dir"], world / paths["val_images"],
                           ev / "panoptic.json", ev / "panoptic", unseen, pics, count)
    curves = []
    if val_pq_curve(out / "run", pics / "val_pq.png"):
        curves.append(("val_pq.png", "Validation PQ of the VLOSS run over training steps"))
    if (out / "towers" / "loss.png").exists():
        shutil.copyfile(out / "towers" / "loss.png", pics / "pretrain_loss.png")
        curves.append(("pretrain_loss.png", "Loss of the tower pretraining (contrastive and labels)"))
    seconds = summary.get("seconds", {})
    figures = "".join(f'<figure><img src="{PICTURES}/{f}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}'
                      f"</figcaption></figure>" for f, c in curves)
    cells = "".join(
        f'<figure><img src="{PICTURES}/{r["file"]}" alt="val image {r["image_id"]}"><figcaption>image '
        f'{r["image_id"]}; unseen classes in the truth: {html.escape(", ".join(r["unseen_in_truth"]) or "none")}; '
        f'predicted: {html.escape(", ".join(r["unseen_predicted"]) or "none")}</figcaption></figure>' for r in grid)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>VLOSS demo</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:1em auto}}table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #bbb;padding:2px 8px;text-align:right}}figure{{display:inline-block;margin:6px;
vertical-align:top;max-width:560px}}figure img{{max-width:100%}}figcaption{{font-size:90%}}</style></head>
<body><h1>VLOSS demo on the synthetic world</h1>
<p>Numbers in percent, on the synthetic world (not comparable with the paper's real-data numbers).
<i>Unseen</i> classes are named by no training box or mask; the model knows them only from words.
Total time {seconds.get("total", "?")} s.</p>
<h2>Results</h2>{_tables(summary)}
<h2>Curves</h2>{figures}
<h2>ADE20K-style val: ground truth and prediction</h2>
<p>Classes marked {html.escape(UNSEEN_MARK.strip())} are unseen by training.</p>{cells}
</body></html>
"""
    target = out / PAGE
    target.write_text(page)
    return target
