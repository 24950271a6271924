"""The evaluation job: a checkpoint + an evaluation set -> predictions, metrics, report.

Flow (everything that can be validated is validated before Ray starts):

1. Locate and read the ground truth with the task's reader (:mod:`pipelines.evaluate.tasks`);
   the vocabulary is the evaluation set's own category names (open vocabulary, never the
   training names).
2. Load the checkpoint on the driver (:func:`~pipelines.evaluate.model.load_eval_model`):
   shape errors surface here, and the parameter count goes into the report.
3. Ray Data: ``from_items`` (image records) -> ``map_batches(decode_eval_images)`` (Ray tasks)
   -> ``map_batches(EvalPredictor, compute=ActorPoolStrategy(size=n))`` (network and class
   embeddings built once per actor; weights shipped once through the object store) ->
   ``iter_batches`` on the driver, which writes the prediction files.
4. Prediction files in the standard formats: ``OUT/predictions/panoptic/*.png`` +
   ``OUT/predictions/panoptic.json`` (COCO panoptic) or ``OUT/predictions/results.json``
   (LVIS / COCO results: ``image_id, category_id, segmentation`` RLE, ``score``), plus
   ``OUT/predictions/manifest.json`` (counts, failures, the vocabulary the predictor embedded).
5. Score with the task's scorer (PQ; LVIS mask AP; COCO mask AP) and write ``OUT/metrics.json``,
   ``OUT/report.md`` (this run beside the paper's rows), ``OUT/overlays/*.png`` and the resolved
   configuration ``OUT/config.json``.

Images that cannot be read or predicted are counted and listed in the manifest and report. For
PQ, which needs a prediction per ground-truth image, such an image gets an *empty* prediction
(all VOID), so it scores as all missed. With ``limit`` the ground truth is cut to the evaluated
images (``OUT/predictions/gt_subset.json``) before scoring.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pipelines.common.actor_pool import run_actor_pool
from pipelines.common.cli import LOG_FOLDER, write_resolved_config
from pipelines.common.errors import JobError
from pipelines.common.inference_decode import decode_eval_images
from pipelines.common.ray_env import ensure_ray, log_locations
from pipelines.common.remote import fetch, is_remote, mirror_path, publish, to_uri
from pipelines.common.storage import locate
from pipelines.evaluate.config import EvalJobConfig
from pipelines.evaluate.data import (
    EvalSet,
    is_synthetic_world,
    vocabulary_sha256,
    with_vocabulary_file,
    write_gt_subset,
)
from pipelines.evaluate.model import LoadedCheckpoint, load_eval_model
from pipelines.evaluate.predictor import EvalPredictor, encode_png
from pipelines.evaluate.streaming_pq import StreamingPQ
from pipelines.evaluate.tasks import EvalTask, get_task, load_eval_set, resolve_eval_paths
from vloss.data.images import decode_image as decode_rgb
from vloss.data.masks import decode_rle, rgb2id
from vloss.progress import ProgressLine


class EvalJobError(JobError):
    """The evaluation cannot produce a score (e.g. no image could be predicted)."""


@dataclass
class _Collected:
    """What the driver keeps while predictions stream in."""

    annotations: dict[int, dict] = field(default_factory=dict)  # panoptic: index -> annotation
    failed: dict[int, str] = field(default_factory=dict)  # index -> reason
    num_detections: int = 0
    vocab_digests: set = field(default_factory=set)
    overlay_payloads: dict[int, tuple[bytes, str]] = field(default_factory=dict)


def _run_inference(cfg: EvalJobConfig, task: EvalTask, eval_set: EvalSet, ckpt: LoadedCheckpoint,
                   templates: list[str], size: int, max_size: int, pred_dir: Path, results_path: Path,
                   stream: StreamingPQ | None = None) -> _Collected:
    """Ray Data pipeline; writes PNGs (panoptic) or streams the results JSON (instances). With
    ``stream``, each panoptic prediction is also scored as it arrives (failed images as empty)."""
    import ray

    ensure_ray(cfg.pool.ray_num_cpus)  # before ray.put
    items = [{"index": im.index, "path": im.path, "height": im.height, "width": im.width} for im in eval_set.images]
    batches = run_actor_pool(
        items, decode=decode_eval_images, decode_kwargs={"size": size, "max_size": max_size},
        stage=EvalPredictor,
        stage_kwargs={"model_config": asdict(ckpt.model_config), "weights": [ray.put(ckpt.state_dict)],
                      "source": str(ckpt.path), "names": eval_set.names,
                      "category_ids": eval_set.category_ids, "is_thing": eval_set.is_thing,
                      "templates": templates, "panoptic": eval_set.panoptic, "topk": cfg.topk or task.topk or 100,
                      "object_mask_threshold": cfg.object_mask_threshold,
                      "overlap_threshold": cfg.overlap_threshold, "gpus": cfg.pool.gpus_per_actor,
                      "return_ids": stream is not None},
        pool=cfg.pool, batch_size=cfg.batch_size, job="the evaluation job", actors="predictor",
        paths={"--images": eval_set.images[0].path if eval_set.images else None})

    got = _Collected()
    # overlays show the first images that were predicted: keep the payloads of the first few
    # images, with spares in case some of them fail
    overlay_indices = {im.index for im in eval_set.images[: 2 * cfg.overlays + 4]} if cfg.overlays else set()
    with contextlib.ExitStack() as stack:
        results_file = None if eval_set.panoptic else stack.enter_context(open(results_path, "w"))
        if results_file is not None:
            results_file.write("[")
        line = ProgressLine("evaluate", len(items), unit="img")
        for batch in batches:
            line.update(len(batch["index"]), postfix=f"{len(got.failed)} failed" if got.failed else "")
            for k in range(len(batch["index"])):
                idx = int(batch["index"][k])
                im = eval_set.images[idx]
                got.vocab_digests.add(str(batch["vocab_sha256"][k]))
                if batch["error"][k]:
                    got.failed[idx] = str(batch["error"][k])
                    continue
                png, payload = bytes(batch["png"][k]), str(batch["payload"][k])
                if idx in overlay_indices:
                    got.overlay_payloads[idx] = (png, payload)
                if results_file is None:  # panoptic: PNG now, JSON once every image is in
                    (pred_dir / im.pred_name).write_bytes(png)
                    segments = json.loads(payload)
                    got.annotations[idx] = {"image_id": im.image_id, "file_name": im.pred_name,
                                            "segments_info": segments}
                    if stream is not None:
                        ids = np.frombuffer(batch["ids"][k], np.int32).reshape(im.height, im.width)  # [H, W]
                        stream.submit(im.image_id, ids, segments)
                    continue
                for det in json.loads(payload):  # streamed: LVIS val has ~6M detections
                    sep = ",\n" if got.num_detections else ""
                    results_file.write(sep + json.dumps({"image_id": im.image_id, **det}))
                    got.num_detections += 1
        if results_file is not None:
            results_file.write("]\n")
        line.close()
    if stream is not None:  # a failed image is scored as an empty prediction, as its written PNG is
        for idx in got.failed:
            im = eval_set.images[idx]
            stream.submit(im.image_id, np.zeros((im.height, im.width), np.int32), [])
    return got


def _write_panoptic_json(eval_set: EvalSet, got: _Collected, pred_dir: Path, pred_json: Path) -> None:
    """COCO panoptic prediction JSON; failed images get an empty (all-VOID) PNG."""
    anns = []
    for im in eval_set.images:
        if im.index not in got.annotations:
            (pred_dir / im.pred_name).write_bytes(encode_png(np.zeros((im.height, im.width), np.int64)))
            anns.append({"image_id": im.image_id, "file_name": im.pred_name, "segments_info": []})
        else:
            anns.append(got.annotations[im.index])
    with open(eval_set.paths.gt_json) as f:
        categories = json.load(f)["categories"]
    with open(pred_json, "w") as f:
        json.dump({"annotations": anns, "categories": categories}, f)


def _draw_overlays(eval_set: EvalSet, got: _Collected, out_dir: Path, count: int,
                   max_instances: int = 15) -> list[Path]:
    """Overlay PNGs of the first ``count`` predicted images (panoptic segments, or the top
    ``max_instances`` detections by score)."""
    from vloss.viz import draw_instance_overlay, draw_panoptic_overlay

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    names = eval_set.names_by_id
    for idx in sorted(got.overlay_payloads)[:count]:
        im = eval_set.images[idx]
        png, payload = got.overlay_payloads[idx]
        image = decode_rgb(locate(im.path).read_bytes())  # [H, W, 3] uint8
        if eval_set.panoptic:
            with Image.open(io.BytesIO(png)) as p:
                seg_ids = rgb2id(np.asarray(p.convert("RGB")))  # [H, W]
            pil = draw_panoptic_overlay(image, seg_ids, json.loads(payload), names)
        else:
            dets = sorted(json.loads(payload), key=lambda d: -d["score"])[:max_instances]
            masks = np.stack([decode_rle(d["segmentation"]) for d in dets]) if dets \
                else np.zeros((0,) + image.shape[:2], bool)  # [N, H, W]
            pil = draw_instance_overlay(image, masks, [d["category_id"] for d in dets],
                                        [d["score"] for d in dets], names)
        path = out_dir / f"{Path(im.pred_name).stem}.png"
        pil.save(path)
        paths.append(path)
    return paths


def _visual_label(model_config) -> str:
    b = model_config.backbone
    if b.name.startswith("swin_tiny") and b.embed_dim is None and b.depths is None:
        return "Swin-T"
    return b.name if b.embed_dim is None else f"{b.name} (embed {b.embed_dim})"


def _run_section(manifest: dict) -> str:
    c = manifest["counts"]
    lines = ["## Evaluation run", "",
             f"- task: `{manifest['task']}`; ground truth `{manifest['inputs']['gt_json']}`"
             + (f" (scored on the subset `{manifest['scored_gt_json']}`)" if manifest["limited"] else ""),
             f"- images: {c['images_evaluated']} evaluated of {c['images_in_gt']} in the annotation file; "
             f"{c['images_predicted']} predicted, {c['images_failed']} failed",
             f"- input: shorter side {manifest['input']['size']}, longer side at most {manifest['input']['max_size']}, "
             f"padded to a multiple of {manifest['input']['size_divisor']}",
             f"- vocabulary: {len(manifest['vocabulary']['names'])} class names "
             + (f"from {manifest['vocabulary']['file']} for the evaluation set's categories"
                if manifest["vocabulary"].get("file") else "from the evaluation set's own categories")
             + f", templates {manifest['vocabulary']['templates']}"]
    if c["images_failed"]:
        how = ("each got an empty (all-VOID) panoptic prediction, so its segments count as missed"
               if manifest["panoptic"] else "they have no detections, so their instances count as missed")
        lines.append(f"- **{c['images_failed']} image(s) could not be predicted**; {how}:")
        lines += [f"  - image {f['image_id']!r}: {f['reason']}" for f in manifest["failed"][:20]]
    return "\n".join(lines) + "\n"


def run_evaluation(cfg: EvalJobConfig) -> dict[str, Any]:
    """Run one evaluation; return ``{"metrics", "report", "manifest", "table", "out"}``.

    Args:
        cfg: the run's settings.

    Raises:
        DataFormatError / WeightsError / ValueError: bad inputs, before any Ray work.
        EvalJobError: no image could be predicted.
    """
    if any(is_remote(v) for v in (cfg.checkpoint, cfg.out, cfg.data, cfg.gt_json, cfg.images, cfg.gt_dir)):
        return _run_with_object_store(cfg)
    return _run_local(cfg)


def _run_with_object_store(cfg: EvalJobConfig) -> dict[str, Any]:
    """``run_evaluation`` with inputs or outputs on an object store (``s3://``).

    The driver mirrors what it reads itself (ground-truth JSON and PNGs, the checkpoint) with
    :func:`~pipelines.common.remote.fetch`; the images stay where they are and each decode task
    reads its own through ``pyarrow.fs``; a remote ``out`` is written locally and published
    when complete. The manifest records the URIs the user gave.
    """
    if is_remote(cfg.data):
        raise ValueError(f"--data {cfg.data}: a data root on object storage cannot be searched for its layout; "
                         f"give the files with --gt-json, --images and --gt-dir (URIs)")
    given = {"gt_json": cfg.gt_json, "images": cfg.images, "gt_dir": cfg.gt_dir, "checkpoint": cfg.checkpoint}
    staged = replace(cfg, checkpoint=fetch(cfg.checkpoint, "--checkpoint"),
                     gt_json=fetch(cfg.gt_json, "--gt-json") if cfg.gt_json else None,
                     gt_dir=fetch(cfg.gt_dir, "--gt-dir") if cfg.gt_dir else None,
                     images=mirror_path(cfg.images) if cfg.images else None,
                     out=mirror_path(cfg.out) if is_remote(cfg.out) else cfg.out)
    if is_remote(cfg.gt_json):
        _fetch_world_marker(cfg.gt_json)
    result = _run_local(staged, images_uri=cfg.images if is_remote(cfg.images) else None)
    manifest = result["manifest"]
    manifest["inputs"].update({k: v for k, v in given.items() if v is not None})
    if is_remote(cfg.out):
        local = Path(staged.out).resolve()

        def remote(p: Any) -> str:
            return to_uri(str(p), cfg.out) if p is not None and Path(p).is_relative_to(local) else p

        manifest["scored_gt_json"] = remote(manifest["scored_gt_json"])
        manifest["predictions"] = {k: remote(v) for k, v in manifest["predictions"].items()}
        result.update(report=remote(result["report"]), out=cfg.out, overlays=[remote(p) for p in result["overlays"]])
    Path(staged.out, "predictions", "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if is_remote(cfg.out):
        files = publish(staged.out, cfg.out)
        shutil.rmtree(staged.out, ignore_errors=True)
        print(f"[evaluate] {files} files published to {cfg.out}", flush=True)
    return result


def _fetch_world_marker(gt_json_uri: str) -> None:
    """Mirror a synthetic world's ``world.json`` above the ground truth too (reports label such worlds)."""
    parents = gt_json_uri.split("://", 1)[1].rstrip("/").split("/")[:-1]
    for depth in range(len(parents), max(1, len(parents) - 4), -1):
        marker = f"{gt_json_uri.split('://', 1)[0]}://{'/'.join(parents[:depth])}/world.json"
        if locate(marker).is_file():
            fetch(marker)
            return


def _run_local(cfg: EvalJobConfig, images_uri: str | None = None) -> dict[str, Any]:
    t0 = time.time()
    task = get_task(cfg.task)
    paths = resolve_eval_paths(task, cfg.data, cfg.gt_json, cfg.images, cfg.gt_dir)
    eval_set = load_eval_set(task, paths, cfg.limit)
    if cfg.vocab_file:
        eval_set = with_vocabulary_file(eval_set, cfg.vocab_file)
    if images_uri is not None:  # read by the decode tasks straight from the object store
        eval_set.images = [replace(im, path=to_uri(im.path, images_uri)) for im in eval_set.images]
    if not eval_set.names:
        raise ValueError(f"{paths.gt_json}: no categories: an evaluation needs a vocabulary to embed")
    if not eval_set.images:
        raise ValueError(f"{paths.gt_json}: no images to evaluate")
    model, ckpt = load_eval_model(cfg.checkpoint, cfg.config, list(cfg.overrides))
    size_divisor = model.size_divisor
    del model  # validated and counted; the actors build their own copies
    templates = list(ckpt.templates)
    size = cfg.size or ckpt.default_size
    max_size = cfg.max_size or 4 * size

    final = Path(cfg.out).resolve()
    # everything is written to a staging folder and moved into place only when complete: an
    # interrupted or failed re-run leaves the previous complete results, never a mix
    out = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    try:
        result = _evaluate_into(cfg, task, paths, eval_set, ckpt, size_divisor, templates, size, max_size, out, final,
                                t0)
        _swap_into_place(out, final)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return result


def _swap_into_place(staging: Path, final: Path) -> None:
    """Replace ``final`` by the complete ``staging`` folder (the old one is removed after)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if (final / LOG_FOLDER).is_dir() and not (staging / LOG_FOLDER).exists():
        os.replace(final / LOG_FOLDER, staging / LOG_FOLDER)  # this job's Ray logs (open files move along)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def _evaluate_into(cfg: EvalJobConfig, task: EvalTask, paths, eval_set: EvalSet, ckpt: LoadedCheckpoint,
                   size_divisor: int, templates: list[str], size: int, max_size: int, out: Path, final: Path,
                   t0: float) -> dict[str, Any]:
    """Predict, score and report into ``out``; recorded paths name their place under ``final``."""
    def final_path(p: Path) -> Path:
        return final / Path(p).relative_to(out) if Path(p).is_relative_to(out) else Path(p)

    write_resolved_config(str(out), {"evaluation": cfg, "checkpoint": ckpt.config})
    pred_root = out / "predictions"
    pred_dir = pred_root / "panoptic"
    (pred_dir if eval_set.panoptic else pred_root).mkdir(parents=True, exist_ok=True)
    pred_json = pred_root / ("panoptic.json" if eval_set.panoptic else "results.json")
    scored_gt = write_gt_subset(eval_set, pred_root / "gt_subset.json")
    stream = StreamingPQ(scored_gt, paths.gt_dir, cfg.pq_workers, cfg.pq_crowd_rule) \
        if eval_set.panoptic and cfg.pq_from == "memory" else None
    try:
        got = _run_inference(cfg, task, eval_set, ckpt, templates, size, max_size, pred_dir, pred_json, stream)
    except BaseException:
        if stream is not None:
            stream.close()
        raise
    if len(got.failed) == len(eval_set.images):
        if stream is not None:
            stream.close()
        first = next(iter(got.failed.values()))
        raise EvalJobError(f"none of the {len(eval_set.images)} images could be predicted (first: {first})")
    if eval_set.panoptic:
        _write_panoptic_json(eval_set, got, pred_dir, pred_json)
    expected = vocabulary_sha256(eval_set.names, templates)
    if got.vocab_digests != {expected}:
        if stream is not None:
            stream.close()
        raise EvalJobError(f"predictor vocabulary digests {sorted(got.vocab_digests)} differ from the "
                           f"evaluation set's {expected}")

    manifest = {
        "task": task.name, "panoptic": task.panoptic,
        "inputs": {"gt_json": str(paths.gt_json), "images": str(paths.images),
                   "gt_dir": str(paths.gt_dir) if paths.gt_dir else None, "checkpoint": str(ckpt.path),
                   "checkpoint_kind": ckpt.kind},
        "limited": scored_gt != paths.gt_json, "scored_gt_json": str(final_path(scored_gt)),
        "predictions": {"json": str(final_path(pred_json)),
                        "png_dir": str(final_path(pred_dir)) if eval_set.panoptic else None},
        "input": {"size": size, "max_size": max_size, "size_divisor": size_divisor},
        "vocabulary": {"names": eval_set.names, "category_ids": eval_set.category_ids, "file": cfg.vocab_file,
                       "is_thing": eval_set.is_thing, "templates": templates,
                       "sha256": expected, "predictor_sha256": sorted(got.vocab_digests)},
        "counts": {"images_in_gt": eval_set.num_images_total, "images_evaluated": len(eval_set.images),
                   "images_predicted": len(eval_set.images) - len(got.failed), "images_failed": len(got.failed),
                   "empty_predictions_written": len(got.failed) if eval_set.panoptic else 0,
                   "detections": got.num_detections},
        "failed": [{"image_id": eval_set.images[i].image_id, "path": eval_set.images[i].path, "reason": r}
                   for i, r in sorted(got.failed.items())],
    }
    (pred_root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")

    t_score = time.time()
    if stream is not None:
        metrics = stream.summary()
    else:
        metrics = task.scorer(scored_gt, paths, pred_json, pred_dir, cfg.pq_workers, task.topk, cfg.pq_crowd_rule)
    manifest["scoring"] = {"from": "memory" if stream is not None else "files",
                           "seconds_after_inference": round(time.time() - t_score, 3),
                           "crowd_rule": cfg.pq_crowd_rule if eval_set.panoptic else None}
    overlays = _draw_overlays(eval_set, got, out / "overlays", cfg.overlays)
    from vloss.eval.report import render_table, write_report

    config = {"evaluation": asdict(cfg), "checkpoint": ckpt.config}
    visual = _visual_label(ckpt.model_config)
    synthetic = is_synthetic_world(paths)
    report = write_report(out, task.name, metrics, config, ckpt.path, ckpt.params, overlays, visual_enc=visual,
                          synthetic=synthetic)
    with open(report, "a") as f:
        f.write("\n" + _run_section(manifest))
    manifest["seconds"] = round(time.time() - t0, 3)
    (pred_root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    table = render_table(task.name, metrics, params=ckpt.params, visual_enc=visual, with_published=not synthetic)
    return {"metrics": metrics, "report": final_path(report), "manifest": manifest, "table": table, "out": final,
            "overlays": [final_path(p) for p in overlays]}


def summary_lines(result: dict[str, Any]) -> str:
    """What the job prints at the end: counts, the report table and where the files are."""
    m = result["manifest"]
    c = m["counts"]
    lines = [f"[evaluate] {m['task']}: {c['images_predicted']}/{c['images_evaluated']} images predicted, "
             f"{c['images_failed']} failed" + (" (empty predictions written for them)" if c["images_failed"]
                                              and m["panoptic"] else ""),
             "", result["table"], "",
             f"[evaluate] metrics: {str(result['out']).rstrip('/')}/metrics.json",
             f"[evaluate] report:  {result['report']}",
             f"[evaluate] {log_locations()}"]
    lines += [f"[evaluate] failed image {f['image_id']!r}: {f['reason']}" for f in m["failed"][:10]]
    return "\n".join(lines)

