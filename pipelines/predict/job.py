"""The batch-prediction job: images + a vocabulary + a checkpoint -> Parquet shards of segments (+ overlays).

Flow (everything that can be checked is checked before Ray starts):

1. List the images (sorted: an image's index and shard never change), read the vocabulary, load
   the checkpoint in the driver (shape-checked, ``weights_only=True``) and claim the output for
   this plan (:mod:`pipelines.common.output_set`): the same command completes what is missing,
   another plan is refused unless ``overwrite``.
2. Ray Data: ``from_items`` -> ``map_batches(decode_eval_images)`` (torch-free tasks) ->
   ``map_batches(PredictStage, ActorPoolStrategy)`` (network + vocabulary embeddings once per
   actor; weights shipped once through the object store) -> the driver commits each shard when its
   images are in (temporary name, then rename) and writes the overlays.
3. ``OUT/_manifest.json`` (switched in last) lists every shard with rows, size and sha256, the
   counts and the images that failed (with reasons); failed images are retried on every run.

Shard rows: ``index int64, image string, height int32, width int32, segments list<struct<id,
label, name, isthing, score, area, bbox, segmentation (COCO RLE counts)>>``.
"""

from __future__ import annotations

import io
import json
import posixpath
import time
from dataclasses import asdict
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.common.actor_pool import run_actor_pool
from pipelines.common.cli import write_resolved_config
from pipelines.common.errors import JobError
from pipelines.common.inference_decode import decode_eval_images
from pipelines.common.output_set import verified_shards
from pipelines.common.remote import fetch
from pipelines.common.shard_writer import ShardSetWriter
from pipelines.common.shards import shard_name
from pipelines.common.storage import Location, locate
from pipelines.predict.config import PredictJobConfig
from pipelines.predict.inputs import list_images, listing_sha256
from pipelines.predict.stage import PredictStage
from vloss.checkpoint import load_model_checkpoint
from vloss.config_io import to_dict
from vloss.inference.predictor import Predictor, Vocabulary
from vloss.progress import ProgressLine

MANIFEST_NAME = "_manifest.json"
META_KEY = b"vloss.predictions"
SEGMENT = pa.struct([("id", pa.int32()), ("label", pa.int32()), ("name", pa.string()), ("isthing", pa.bool_()),
                     ("score", pa.float32()), ("area", pa.int64()), ("bbox", pa.list_(pa.float64(), 4)),
                     ("segmentation", pa.binary())])
SCHEMA = pa.schema([("index", pa.int64()), ("image", pa.string()), ("height", pa.int32()), ("width", pa.int32()),
                    ("segments", pa.list_(SEGMENT))])


class PredictJobError(JobError):
    """The prediction job cannot produce an output (every image failed)."""


def _settings(cfg: PredictJobConfig) -> dict[str, Any]:
    return {"task": cfg.task, "size": cfg.size, "threshold": cfg.threshold, "topk": cfg.topk,
            "batch_size": cfg.batch_size}


def _plan(paths: list[str], rows: int) -> list[list[int]]:
    return [list(range(k, min(k + rows, len(paths)))) for k in range(0, len(paths), rows)]


def _check(loc: Location, indices: list[int]) -> tuple[dict, int]:
    """The content check of a kept shard: its footer names exactly ``indices`` and no failures."""
    try:
        meta = json.loads(pq.read_schema(io.BytesIO(loc.read_bytes())).metadata[META_KEY])
    except Exception as exc:  # truncated / foreign file: rebuild
        raise ValueError(f"unreadable ({type(exc).__name__}: {exc})") from None
    if meta.get("indices") != indices:
        raise ValueError("images differ from the plan")
    if meta.get("failed"):
        raise ValueError("retrying its failed images")
    return meta, len(indices)


def _shard_bytes(index: int, rows: list[dict], indices: list[int], failed: list[dict]) -> tuple[bytes, dict]:
    meta = {"shard_index": index, "indices": indices, "failed": sorted(failed, key=lambda f: f["index"])}
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["index"]), schema=SCHEMA)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue(), meta


def run_prediction(cfg: PredictJobConfig, on_commit: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the manifest.

    Raises:
        FileNotFoundError / ValueError: missing images, a bad vocabulary or checkpoint (before Ray).
        OutputConflictError: the output holds another plan's shards.
        PredictJobError: every image failed.
    """
    t0 = time.time()
    paths = list_images(cfg.images)
    paths = paths[:cfg.limit] if cfg.limit else paths
    if cfg.vocab_file:
        vocab_loc = locate(cfg.vocab_file)
        vocab = Vocabulary.parse(vocab_loc.read_bytes().decode("utf-8"), vocab_loc.uri)
    else:
        vocab = Vocabulary.from_lists(cfg.things, cfg.stuff)
    ckpt = load_model_checkpoint(fetch(cfg.checkpoint, "--checkpoint"), cfg.config)  # s3://: mirrored here
    Predictor.from_state(ckpt.job, ckpt.state_dict, "cpu", source=str(ckpt.path),
                         **_settings(cfg)).set_vocabulary(vocabulary=vocab)  # shapes and names checked here
    ckpt_sha = _checkpoint_sha(ckpt.path)
    out = locate(cfg.out)
    fingerprint = {"format": 1, "checkpoint_sha256": ckpt_sha, "vocabulary": asdict(vocab),
                   "settings": _settings(cfg) | {"batch_size": None}, "overlays": cfg.overlays,
                   "rows_per_shard": cfg.rows_per_shard, "images_sha256": listing_sha256(paths)}
    with ShardSetWriter(out, fingerprint, what="predictions", overwrite=cfg.overwrite) as shards:
        write_resolved_config(out, {"job": cfg, "checkpoint": to_dict(ckpt.job)}, name="_config.json")
        plan = _plan(paths, cfg.rows_per_shard)
        footers, todo = {}, []
        for s, indices in enumerate(plan):
            meta = shards.kept(shard_name(s), lambda loc, indices=indices: _check(loc, indices))
            if meta is None:
                todo.append(s)
            else:
                footers[s] = meta
        if todo:
            footers.update(_run_ray(cfg, paths, plan, todo, ckpt, vocab, shards, on_commit))
        shards.remove_strays()
        return _finish(cfg, paths, plan, todo, footers, shards, vocab, ckpt_sha, t0)


def _finish(cfg: PredictJobConfig, paths: list[str], plan: list[list[int]], todo: list[int], footers: dict[int, dict],
            shards: ShardSetWriter, vocab: Vocabulary, ckpt_sha: str, t0: float) -> dict[str, Any]:
    """The manifest of a run whose shards are all written; commits the set."""
    failed = [f for s in sorted(footers) for f in footers[s]["failed"]]
    manifest = {
        "task": cfg.task, "images": cfg.images, "checkpoint": cfg.checkpoint, "checkpoint_sha256": ckpt_sha,
        "vocabulary": asdict(vocab),
        "counts": {"images": len(paths), "predicted": len(paths) - len(failed), "failed": len(failed),
                   "shards": len(plan), "shards_written": len(todo), "shards_kept": len(plan) - len(todo)},
        "shards": [{**shards.entries[shard_name(s)], "failed": len(footers[s]["failed"])} for s in range(len(plan))],
        "errors": failed, "seconds": round(time.time() - t0, 3)}
    manifest = shards.commit(MANIFEST_NAME, manifest)
    if paths and len(failed) == len(paths):
        raise PredictJobError(f"every one of the {len(paths)} images failed (first: {failed[0]['image']}: "
                              f"{failed[0]['reason']})")
    return manifest


def _checkpoint_sha(path) -> str:
    from vloss.checkpoint import STATE_FILE

    return locate(str(path / STATE_FILE if path.is_dir() else path)).sha256()


def _run_ray(cfg, paths, plan, todo, ckpt, vocab, shards: ShardSetWriter, on_commit) -> dict[int, dict]:
    """Predict the images of the shards ``todo``; write each shard the moment its images are in.

    Returns:
        shard index -> its footer metadata.
    """
    import ray

    from pipelines.common.ray_env import ensure_ray

    ensure_ray(cfg.pool.ray_num_cpus)  # before ray.put
    size = cfg.size or ckpt.job.input.dense_size
    items = [{"index": i, "path": paths[i], "height": 0, "width": 0} for s in todo for i in plan[s]]
    shard_of = {i: s for s in todo for i in plan[s]}
    pending = {s: {"rows": [], "failed": []} for s in todo}
    done: dict[int, dict] = {}
    line = ProgressLine("predict", len(items), unit="img")
    batches = run_actor_pool(
        items, decode=decode_eval_images, decode_kwargs={"size": size, "max_size": 4 * size,
                                                          "keep_original": cfg.overlays},
        stage=PredictStage, stage_kwargs={"job": to_dict(ckpt.job), "weights": [ray.put(ckpt.state_dict)],
                                          "vocabulary": asdict(vocab), "settings": _settings(cfg),
                                          "gpus": cfg.pool.gpus_per_actor},
        pool=cfg.pool, batch_size=cfg.batch_size, job="the prediction job", actors="predictor",
        paths={"--images": paths[0] if paths else None}, preserve_order=True)
    for batch in batches:
        line.update(len(batch["index"]))
        for k in range(len(batch["index"])):
            i = int(batch["index"][k])
            s = shard_of[i]
            if batch["error"][k]:
                pending[s]["failed"].append({"index": i, "image": paths[i], "reason": str(batch["error"][k])})
            else:
                segs = json.loads(batch["segments"][k])
                for seg in segs:
                    seg["segmentation"] = seg["segmentation"].encode("ascii")
                pending[s]["rows"].append({"index": i, "image": paths[i], "height": int(batch["height"][k]),
                                           "width": int(batch["width"][k]), "segments": segs})
                if cfg.overlays and batch["overlay"][k]:
                    stem = posixpath.splitext(posixpath.basename(paths[i]))[0]
                    shards.out.child("overlays", f"{i:06d}_{stem}.png").write_bytes_atomic(bytes(batch["overlay"][k]))
            p = pending[s]
            if len(p["rows"]) + len(p["failed"]) == len(plan[s]):
                data, done[s] = _shard_bytes(s, p["rows"], plan[s], p["failed"])
                shards.write(shard_name(s), data, len(p["rows"]))
                if on_commit is not None:
                    on_commit(shard_name(s))
    line.close()
    return done


def read_predictions(out: str) -> Iterator[dict]:
    """The rows of a finished output, image by image in index order (the set is verified first)."""
    _, locs = verified_shards(out, MANIFEST_NAME)
    for loc in locs:
        for row in pq.read_table(io.BytesIO(loc.read_bytes())).to_pylist():
            for seg in row["segments"]:
                seg["segmentation"] = {"size": [row["height"], row["width"]],
                                       "counts": seg["segmentation"].decode("ascii")}
            yield row
