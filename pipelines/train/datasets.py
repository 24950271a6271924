"""One rank's pass over a task's training shards as a Ray dataset of transformed rows.

:func:`pipelines.train.pass_plan.rank_windows` decides the rows and their order; here each window
becomes one read task (its row groups read once, its rows yielded in training order) followed by
the task's transform (decode + augmentation, seeded per sample). ``preserve_order`` keeps the
rows in plan order whatever finishes first, so the batches a rank sees are a function of
(seed, task, pass, rank) alone. The datasets are built on the Ray Train workers, pass by pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.common.storage import locate
from pipelines.train.pass_plan import ROW_GROUP_ROWS, WINDOW_UNITS, Window, data_seed, rank_windows
from pipelines.train.transforms import CaptionTransform, DenseTransform
from vloss.config import InputConfig
from vloss.training.tasks import training_task


@dataclass
class TaskShards:
    """What a worker needs to read a task's shards: read once from the manifest on the driver.

    Args:
        task: "panoptic", "detection" or "captions".
        root: the shard root (path or URI).
        names: shard names relative to ``root``, in manifest order.
        rows: rows per shard.
        sha256: each shard's checksum, as recorded when it was written.
        row_group_rows: rows per Parquet row group.
        cached: read every row group once into Ray's object store (small tasks).
    """

    task: str
    root: str
    names: list[str]
    rows: list[int]
    sha256: list[str] = field(default_factory=list)
    row_group_rows: int = ROW_GROUP_ROWS
    cached: bool = False


class ShardReadError(ValueError):
    """A training shard could not be read back as written (damaged or changed since)."""


def read_row_group(root: str, name: str, group: int | None, verify_sha: str | None = None) -> pa.Table:
    """Read one row group of a shard (``group=None``: all of it), with Parquet page checksums verified.

    Args:
        root: shard root.
        name: shard name under ``root``.
        group: row group index.
        verify_sha: also check the whole file's sha256 against this value first (``--set
            cluster.verify_shards=full``).

    Raises:
        ShardReadError: the file is damaged or changed (names it).
    """
    loc = locate(root).child(name)
    try:
        if verify_sha is not None and loc.sha256() != verify_sha:
            raise ShardReadError(f"training shard {loc.uri} changed since it was written (sha256 differs from "
                                 f"the manifest); re-run the job to rebuild the shards")
        with loc.fs.open_input_file(loc.path) as f:
            pf = pq.ParquetFile(f, page_checksum_verification=True)
            return pf.read() if group is None else pf.read_row_group(group)
    except ShardReadError:
        raise
    except (OSError, pa.ArrowException) as exc:
        where = "" if group is None else f" row group {group}"
        raise ShardReadError(f"training shard {loc.uri}{where} cannot be read back as written "
                             f"({type(exc).__name__}: {exc}); re-run the job to rebuild the shards") from exc


class _ReadWindow:
    """Ray Data ``flat_map``: read a window's row groups once, yield its rows in training order."""

    def __init__(self, shards: TaskShards, verify: bool, refs: dict[str, Any] | None) -> None:
        self.shards, self.verify, self.refs = shards, verify, refs or {}

    def __call__(self, item: dict[str, Any]) -> Iterator[dict[str, Any]]:
        import ray

        sh = self.shards
        tables = {}
        cached: dict[int, pa.Table] = {}
        for s, g in item["reads"]:
            ref = self.refs.get(str(s))
            if ref is not None:  # the whole shard is in the object store (zero-copy): slice the group out
                if s not in cached:
                    cached[s] = ray.get(ref)
                tables[(s, g)] = cached[s].slice(g * sh.row_group_rows, sh.row_group_rows)
            else:
                tables[(s, g)] = read_row_group(sh.root, sh.names[s], g,
                                                sh.sha256[s] if self.verify and sh.sha256 else None)
        for s, r in item["rows"]:
            table = tables[(s, r // sh.row_group_rows)]
            yield table.slice(r % sh.row_group_rows, 1).to_pylist()[0]


def cache_row_groups(shards: TaskShards) -> dict[str, Any]:
    """Every shard of a (small) task in Ray's object store, read once with its page checksums
    verified: ``{"shard index": ObjectRef of the shard's table}`` (one object per shard, not per
    row group: 100k rows are 400 objects, not 6,250)."""
    import ray

    return {str(s): ray.put(read_row_group(shards.root, name, None)) for s, name in enumerate(shards.names)}


def pass_dataset(shards: TaskShards, cfg: InputConfig, *, seed: int, pass_index: int, rank: int,
                 rank_batches: list[int], step_images: int = 0, cap: int = 0, skip_steps: int = 0,
                 num_cpus: float = 0.25, refs: dict[str, Any] | None = None, verify: bool = False,
                 window_units: int = WINDOW_UNITS):
    """One rank's pass as a Ray dataset of transformed rows, in training order.

    Args:
        shards: the task's shards.
        cfg: input settings (sizes, scales).
        seed: the run's data seed (:func:`pipelines.train.pass_plan.data_seed`).
        pass_index: which pass over the task (the order and the augmentation depend on it).
        rank: this rank.
        rank_batches: every rank's batch, rank by rank (:func:`rank_windows`).
        step_images: rows a step takes from the pass, the global batch (0: ``sum(rank_batches)``).
        cap: use only the first ``cap`` rows of the task (0: all).
        skip_steps: steps of this pass already trained (a resume): their rows neither read nor decoded.
        num_cpus: CPUs each read-and-transform task reserves.
        refs: row groups already in the object store (:func:`cache_row_groups`).
        verify: check each shard's whole-file sha256 before reading it.
        window_units: row groups shuffled together.
    """
    import ray

    windows: list[Window] = rank_windows(shards.rows, seed=seed, task=shards.task, pass_index=pass_index,
                                         rank=rank, rank_batches=rank_batches, step_images=step_images,
                                         row_group_rows=shards.row_group_rows, window_units=window_units, cap=cap,
                                         skip_steps=skip_steps)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    items = [{"reads": [list(x) for x in w.reads], "rows": [list(x) for x in w.rows]} for w in windows]
    if not items:
        return ray.data.from_items([]).limit(0)
    if not training_task(shards.task).dense:
        fn = CaptionTransform(cfg.caption_size, seed, pass_index)
    else:
        fn = DenseTransform(cfg.dense_size, cfg.lsj_min_scale, cfg.lsj_max_scale, seed, shards.task, pass_index)
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    return ds.flat_map(_ReadWindow(shards, verify, refs), num_cpus=num_cpus).map(fn, num_cpus=num_cpus)


def pass_opener(shards: dict[str, TaskShards], job: Any, rank: int, world: int, num_cpus: float = 0.25,
                verify: bool = False, pin_memory: bool = False):
    """The :data:`pipelines.train.streams.OpenPass` of one rank: each pass a fresh seeded dataset.

    Args:
        shards: per task, its shards (:func:`task_shards`).
        job: the run's ``TrainJobConfig`` (batch sizes, image caps, input settings).
        rank, world: this rank and the number of ranks.
        num_cpus: CPUs each read-and-transform task reserves.
        verify: check whole-file checksums before reading (``cluster.verify_shards=full``).
        pin_memory: page-lock each batch in Ray's prefetch thread (a worker training on a GPU), so
            the trainer's non-blocking copies overlap with the step.
    """
    from pipelines.train.collate import collate_fns

    refs = {t: cache_row_groups(s) for t, s in shards.items() if s.cached}
    seed = data_seed(job.seed, job.input.seed)

    def open_pass(task: str, pass_index: int, skip_batches: int) -> Iterator[dict[str, Any]]:
        split = job.train.rank_batch_sizes(task, world)
        b = split[rank]
        ds = pass_dataset(shards[task], job.input, seed=seed, pass_index=pass_index, rank=rank, rank_batches=split,
                          step_images=job.train.batch_size(task), cap=job.train.images_cap(task),
                          skip_steps=skip_batches, num_cpus=num_cpus, refs=refs.get(task), verify=verify)
        return iter(ds.iter_torch_batches(batch_size=b, collate_fn=collate_fns(pin_memory)[task], drop_last=True,
                                          prefetch_batches=2))

    return open_pass


def task_shards(root: str, tasks: tuple[str, ...] | list[str], cache_mb: float = 0.0) -> dict[str, TaskShards]:
    """Per task, its shards as the manifest lists them (one manifest read; names and sizes checked).

    Args:
        root: the shard root.
        tasks: the tasks the run draws from.
        cache_mb: tasks whose shards total at most this many MB are cached in the object store.
    """
    from pipelines.train.shards import shard_set

    manifest, _ = shard_set(root, check_sha=False)
    group = int(manifest.get("row_group_rows") or 0)
    if not group:
        raise ValueError(f"{root}: the training shards were written without fixed row groups (an older "
                         f"version); rebuild them: re-run with --overwrite, or delete the folder")
    out = {}
    for task in tasks:
        prefix = f"{manifest['generation']}/{task}/"
        entries = [e for e in manifest["shards"] if e["name"].startswith(prefix)]
        if not entries:
            raise FileNotFoundError(f"no '{task}' shards under {root}/{task} (python -m jobs.train builds them "
                                    f"from --data, or pipelines.train.sources.build_training_shards)")
        size = sum(int(e["bytes"]) for e in entries)
        out[task] = TaskShards(task=task, root=str(root), names=[e["name"] for e in entries],
                               rows=[int(e["rows"]) for e in entries], sha256=[e["sha256"] for e in entries],
                               row_group_rows=group, cached=0 < size <= cache_mb * 2 ** 20)
    return out
