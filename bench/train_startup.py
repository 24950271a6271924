"""Does a training start grow with the dataset? Driver time from launch to the first step.

Builds panoptic shard sets of 1k, 10k and 100k small rows (a 32x32 PNG and one full-image
segment each, written as the training-shard writer writes them: 16-row groups, page checksums,
a manifest with every shard's rows, bytes and sha256), then times ``run_training`` of the
``tiny`` network for one step on each: Ray Train start-up, the run directory claim, the plan,
the manifest read, the worker's pass plan and the first window's read and decode. Before issue
#21 a start streamed and sha256-hashed every shard about ten times on the driver.

Prints seconds per size and the ratio 100k / 1k (target < 2).

    .venv/bin/python bench/train_startup.py [--sizes 1000,10000,100000] [--work DIR]
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_shard_set(root: Path, rows: int, rows_per_shard: int = 256) -> None:
    """A complete panoptic shard set of ``rows`` tiny rows under ``root``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from pipelines.common.output_set import commit_manifest, shard_entry
    from pipelines.common.shards import shard_name
    from pipelines.common.storage import locate, write_json_atomic
    from pipelines.train.pass_plan import ROW_GROUP_ROWS
    from pipelines.train.shards import MANIFEST_NAME, SCHEMA, VOCAB_NAME, TaskVocabulary
    from vloss.data.masks import encode_rle

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 127, np.uint8)).save(buf, format="PNG")
    png = buf.getvalue()
    rle = encode_rle(np.ones((32, 32), bool))["counts"]
    rle = rle.encode() if isinstance(rle, str) else rle
    gen = "gen-0001"
    (root / gen / "panoptic").mkdir(parents=True)
    vocab = TaskVocabulary(dataset="bench", task="panoptic", category_ids=[1], names=["thing"], isthing=[True])
    write_json_atomic(locate(str(root / gen / "panoptic" / VOCAB_NAME)), vocab.to_json())
    entries = []
    for k, start in enumerate(range(0, rows, rows_per_shard)):
        n = min(rows_per_shard, rows - start)
        table = pa.Table.from_pylist([{
            "task": "panoptic", "dataset": "bench", "image_id": start + i, "file_name": f"{start + i}.png",
            "image": png, "height": 32, "width": 32,
            "instances": [{"id": 1, "category_id": 1, "label": 0, "isthing": True, "iscrowd": False,
                           "bbox": [0.0, 0.0, 32.0, 32.0], "segmentation": rle, "area": 1024, "score": 1.0}],
            "captions": []} for i in range(n)], schema=SCHEMA)
        out = io.BytesIO()
        pq.write_table(table, out, row_group_size=ROW_GROUP_ROWS, write_page_checksum=True)
        name = f"{gen}/panoptic/{shard_name(k)}"
        (root / name).write_bytes(out.getvalue())
        entries.append(shard_entry(name, out.getvalue(), n))
    commit_manifest(str(root), MANIFEST_NAME, {"sources": {}, "rows_per_shard": rows_per_shard,
                                               "row_group_rows": ROW_GROUP_ROWS, "tasks": {}, "shards": entries}, gen)


def time_first_step(shards: Path, run_dir: Path) -> float:
    from pipelines.train.config import ClusterConfig
    from pipelines.train.job import run_training
    from vloss.config import resolve

    job = resolve("tiny", ["train.schedule=panoptic", "train.caption_ratio=0", "train.epochs=1",
                           "train.max_steps=1", "train.eval_every=0", "train.dense_batch_size=2",
                           "input.dense_size=32", "model.decoder.num_queries=4", "loss.num_points=16"])
    t0 = time.perf_counter()
    run_training(job, str(shards), str(run_dir), ClusterConfig(workers=1, cpus_per_worker=0.5))
    return time.perf_counter() - t0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--work", default=None, help="work folder (default: a temporary one, removed)")
    a = p.parse_args()
    from pipelines.common.ray_env import configure_output, ensure_ray

    work = Path(a.work or tempfile.mkdtemp(prefix="vloss-startup-"))
    configure_output(False, str(work / "ray_logs"))
    ensure_ray(2)
    sizes = [int(s) for s in a.sizes.split(",")]
    seconds = {}
    try:
        for n in sizes:
            shards = work / f"shards_{n}"
            if not shards.exists():
                t0 = time.perf_counter()
                build_shard_set(shards, n)
                print(f"built {n} rows in {time.perf_counter() - t0:.1f} s "
                      f"({sum(f.stat().st_size for f in shards.rglob('*.parquet')) / 2**20:.1f} MiB)", flush=True)
            shutil.rmtree(work / f"run_{n}", ignore_errors=True)
            seconds[n] = time_first_step(shards, work / f"run_{n}")
            print(f"{n:>7} rows: launch to first step {seconds[n]:.1f} s", flush=True)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    if len(sizes) > 1:
        print(f"ratio {sizes[-1]}/{sizes[0]}: {seconds[sizes[-1]] / seconds[sizes[0]]:.2f} (target < 2)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    raise SystemExit(main())
