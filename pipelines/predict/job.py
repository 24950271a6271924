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

from pipelines.common import output_lock
from pipelines.common.cli import write_resolved_config
from pipelines.common.errors import JobError
from pipelines.common.inference_decode import decode_eval_images
from pipelines.common.output_set import claim_output, commit_manifest, entry_of_file, shard_entry, verified_shards
from pipelines.common.ray_env import ensure_ray
from pipelines.common.remote import fetch
from pipelines.common.resources import check_actor_pool_fits, iter_pool_results
from pipelines.common.shards import shard_name
from pipelines.common.shared_paths import check_shared
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


def _existing(gen: Location, name: str, indices: list[int]) -> dict | None:
    """A kept shard's footer (it holds exactly ``indices`` and no failures), else None."""
    loc = gen.child(name)
    if not loc.is_file():
        return None
    try:
        meta = json.loads(pq.read_schema(io.BytesIO(loc.read_bytes())).metadata[META_KEY])
    except Exception:  # truncated / foreign file: rebuild
        return None
    return meta if meta.get("indices") == indices and not meta.get("failed") else None


def _write(gen: Location, name: str, index: int, rows: list[dict], indices: list[int], failed: list[dict]
           ) -> tuple[bytes, dict]:
    meta = {"shard_index": index, "indices": indices, "failed": sorted(failed, key=lambda f: f["index"])}
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["index"]), schema=SCHEMA)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    gen.child(name).write_bytes_atomic(buf.getvalue())
    return buf.getvalue(), meta


def run_prediction(cfg: PredictJobConfig, on_commit: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the job; returns the manifest.

    Raises:
        FileNotFoundError / ValueError: missing images, a bad vocabulary or checkpoint (before Ray).
        OutputConflictError: the output holds another plan's shards.
        PredictJobError: every image failed.
    """
    try:
        return _run_prediction_locked(cfg, on_commit)
    finally:
        output_lock.release(locate(cfg.out))  # the next job may write it


def _run_prediction_locked(cfg: PredictJobConfig, on_commit: Callable[[str], None] | None = None) -> dict[str, Any]:
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
    claim = claim_output(out, fingerprint, overwrite=cfg.overwrite, what="predictions", command_hint="--overwrite")
    gen = out.child(claim.generation)
    gen.makedirs()
    write_resolved_config(out, {"job": cfg, "checkpoint": to_dict(ckpt.job)}, name="_config.json")

    plan = _plan(paths, cfg.rows_per_shard)
    entries, footers, todo = {}, {}, []
    for s, indices in enumerate(plan):
        name = shard_name(s)
        meta = _existing(gen, name, indices)
        if meta is None:
            todo.append(s)
        else:
            footers[s] = meta
            entries[s] = entry_of_file(out, f"{claim.generation}/{name}", len(indices))
    for n in gen.list_names():
        if n not in {shard_name(s) for s in range(len(plan))} and not n.startswith("."):
            gen.child(n).delete()
    if todo:
        for s, (data, meta) in _run_ray(cfg, paths, plan, todo, ckpt, vocab, out, gen, on_commit).items():
            footers[s] = meta
            entries[s] = shard_entry(f"{claim.generation}/{shard_name(s)}", data, len(meta["indices"])
                                     - len(meta["failed"]))
    failed = [f for s in sorted(footers) for f in footers[s]["failed"]]
    manifest = {
        "task": cfg.task, "images": cfg.images, "checkpoint": cfg.checkpoint, "checkpoint_sha256": ckpt_sha,
        "vocabulary": asdict(vocab),
        "counts": {"images": len(paths), "predicted": len(paths) - len(failed), "failed": len(failed),
                   "shards": len(plan), "shards_written": len(todo), "shards_kept": len(plan) - len(todo)},
        "shards": [{**entries[s], "failed": len(footers[s]["failed"])} for s in sorted(entries)],
        "errors": failed, "seconds": round(time.time() - t0, 3)}
    commit_manifest(out, MANIFEST_NAME, manifest, claim.generation)
    manifest["generation"] = claim.generation
    if paths and len(failed) == len(paths):
        raise PredictJobError(f"every one of the {len(paths)} images failed (first: {failed[0]['image']}: "
                              f"{failed[0]['reason']})")
    return manifest


def _checkpoint_sha(path) -> str:
    from vloss.checkpoint import STATE_FILE

    return locate(str(path / STATE_FILE if path.is_dir() else path)).sha256()


def _run_ray(cfg, paths, plan, todo, ckpt, vocab, out: Location, gen: Location, on_commit
             ) -> dict[int, tuple[bytes, dict]]:
    import ray

    ensure_ray(cfg.ray_num_cpus)
    check_actor_pool_fits(cfg, "the prediction job", "predictor")
    check_shared({"--images": paths[0] if paths else None}, "the prediction job", cfg.shared_fs,
                 "--set shared_fs=true")
    ctx = ray.data.DataContext.get_current()
    previous = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True
    size = cfg.size or ckpt.job.input.dense_size
    items = [{"index": i, "path": paths[i], "height": 0, "width": 0, "shard": s} for s in todo for i in plan[s]]
    pending = {s: {"rows": [], "failed": []} for s in todo}
    done: dict[int, tuple[bytes, dict]] = {}
    try:
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 64)))
        ds = ds.map_batches(decode_eval_images, fn_kwargs={"size": size, "max_size": 4 * size,
                                                          "keep_original": cfg.overlays},
                            batch_size=cfg.batch_size, num_cpus=cfg.cpus_per_decode_task)
        ds = ds.map_batches(PredictStage, fn_constructor_kwargs={
            "job": to_dict(ckpt.job), "weights": [ray.put(ckpt.state_dict)], "vocabulary": asdict(vocab),
            "settings": _settings(cfg), "gpus": cfg.gpus_per_actor},
            compute=ray.data.ActorPoolStrategy(size=cfg.num_actors), batch_size=cfg.batch_size,
            num_cpus=cfg.actor_cpus, num_gpus=cfg.gpus_per_actor)
        line = ProgressLine("predict", len(items), unit="img")
        shard_of = {it["index"]: it["shard"] for it in items}
        for batch in iter_pool_results(ds, cfg, "the prediction job", "predictor"):
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
                        out.child("overlays", f"{i:06d}_{stem}.png").write_bytes_atomic(bytes(batch["overlay"][k]))
                p = pending[s]
                if len(p["rows"]) + len(p["failed"]) == len(plan[s]):
                    done[s] = _write(gen, shard_name(s), s, p["rows"], plan[s], p["failed"])
                    if on_commit is not None:
                        on_commit(shard_name(s))
        line.close()
    finally:
        ctx.execution_options.preserve_order = previous
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
