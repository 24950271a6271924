"""A run directory and its storage: what makes it one run (its fingerprint), claiming it, the
checkpoints in it (partial folders removed, a damaged Ray Train snapshot set aside) and how far it got."""

from __future__ import annotations

import json
import os
from typing import Any

import pyarrow.fs as pafs

from pipelines.common.output_set import OutputConflictError, claim_output, manifest_identity
from pipelines.common.storage import locate, read_json
from pipelines.train.config import ClusterConfig
from pipelines.train.shards import MANIFEST_NAME, read_vocabulary
from pipelines.train.trainer import BEST_DIR, BEST_FILE
from vloss.config import TrainJobConfig
from vloss.config_io import to_dict
from vloss.training.tasks import training_task

# settings that say how long to run and how often to log or keep checkpoints, not what is trained:
# changing them continues the same run
RUN_LENGTH_KEYS = ("max_steps", "log_every", "checkpoint_every", "keep_checkpoints", "eval_every", "val_images",
                   "val_batch_size")


RUN_STATE = ("metrics.jsonl", "tensorboard", "result.json")      # in the run directory


STORE_STATE = ("ray_train", BEST_DIR, BEST_FILE)                  # in the run's storage (run_store)


def run_store(run_dir: str, cluster: ClusterConfig) -> str:
    """Where a run keeps what workers write (checkpoints, the best checkpoint): shared by every node.

    ``cluster.storage_path/<run name>`` (the run name is the run directory's base name), or the
    run directory itself without a storage path (one machine, or a mount every node shares).
    """
    if not cluster.storage_path:
        return run_dir
    return locate(cluster.storage_path).child(os.path.basename(os.path.normpath(run_dir))).uri


def run_fingerprint(job: TrainJobConfig, cluster: ClusterConfig, shard_root: str) -> dict[str, Any]:
    """What determines a training run: the recipe (less its run-length knobs), the data, GPU or not.

    Not the number of workers: a step trains on the same images on any number of them
    (:mod:`pipelines.train.pass_plan`), so a run continues on fewer or more workers (elastic runs)."""
    recipe = to_dict(job)
    for key in RUN_LENGTH_KEYS:
        recipe["train"].pop(key, None)
    for part in ("backbone", "decoder"):  # memory switches: the same gradients, the same run
        recipe["model"][part].pop("grad_checkpointing", None)
    for part in ("backbone", "text"):  # whether a missing cache entry may be fetched: not what is trained
        recipe["model"][part].pop("allow_download", None)
    return {"recipe": recipe, "gpu": cluster.gpus_per_worker > 0,
            "shards": manifest_identity(read_json(locate(shard_root).child(MANIFEST_NAME))),
            "vocabularies": {t: read_vocabulary(shard_root, t).to_json() for t in job.train.tasks_used()
                             if training_task(t).dense}}


def claim_run(job: TrainJobConfig, shard_root: str, run_dir: str, cluster: ClusterConfig,
              resume_from: str | None, overwrite: bool, resume: str = "auto") -> bool:
    """Claim the run directory for this run before any training (issues #13, #15).

    The same run re-run continues from its own latest checkpoint (Ray Train restores it), also
    after its driver was killed: ``resume="auto"``; ``resume="none"`` refuses to continue it
    instead. Another recipe, worker count or data is refused with what differs, unless
    ``overwrite`` (the old run's state is then removed). An explicit ``resume_from`` on a
    directory that already holds this run's checkpoints is refused rather than silently ignored
    (Ray Train would restore its own).

    Returns:
        Whether the run continues from its own checkpoints.

    Raises:
        OutputConflictError: as above.
    """
    store = run_store(run_dir, cluster)
    storage = locate(store).child("ray_train")
    has_state = bool(storage.list_dirs())
    claim = claim_output(run_dir, run_fingerprint(job, cluster, shard_root), overwrite=overwrite,
                         what="a training run", command_hint="--overwrite")
    if claim.resumed and has_state and resume_from:
        raise OutputConflictError(f"{run_dir} already holds this run's checkpoints ({storage.uri}); Ray Train "
                                  f"continues from its own latest one, so --resume {resume_from} would be ignored. "
                                  f"Drop --resume to continue this run, or use another --out (or --overwrite) to "
                                  f"start from {resume_from}.")
    if claim.resumed and has_state and resume == "none":
        raise OutputConflictError(f"{run_dir} already holds checkpoints of this run ({storage.uri}) and --resume "
                                  f"none refuses to continue it. Use --resume auto (the default) to continue from "
                                  f"its latest checkpoint, or --overwrite to start it again.")
    if not claim.resumed and (has_state or overwrite):
        places = [locate(run_dir).child(n) for n in RUN_STATE] + [locate(store).child(n) for n in STORE_STATE]
        for loc in places:  # the old run's state would otherwise be restored or mixed in
            if loc.fs.get_file_info(loc.path).type == pafs.FileType.Directory:
                loc.fs.delete_dir(loc.path)
            else:
                loc.delete()
    return bool(claim.resumed and has_state)


def tidy_checkpoints(store: str) -> int | None:
    """Remove partial checkpoint folders of a run (a write cut by a full disk or a kill: no
    ``state.pt`` or ``meta.json``), which Ray Train never lists but which would pile up, and return
    the step of the newest complete checkpoint (None: none readable)."""
    import zipfile

    from vloss.checkpoint import META_FILE, STATE_FILE

    storage = locate(store).child("ray_train")
    best = None
    for name in storage.list_dirs():
        if not name.startswith("checkpoint_"):
            continue
        ckpt = storage.child(name)
        if not (ckpt.child(STATE_FILE).is_file() and ckpt.child(META_FILE).is_file()):
            storage.fs.delete_dir(ckpt.path)
            print(f"[train] removed the partial checkpoint folder {ckpt.uri} (no {STATE_FILE} or {META_FILE})",
                  flush=True)
            continue
        try:
            step = int(read_json(ckpt.child(META_FILE)).get("global_step"))
            if isinstance(ckpt.fs, pafs.LocalFileSystem):
                with zipfile.ZipFile(ckpt.child(STATE_FILE).path) as zf:  # reads only the directory at its end
                    zf.namelist()
        except (ValueError, TypeError, OSError, zipfile.BadZipFile) as exc:
            print(f"[train] checkpoint {ckpt.uri} is damaged ({type(exc).__name__}: {exc}); the workers continue "
                  f"from the newest checkpoint before it", flush=True)
            continue
        best = step
    return best


SNAPSHOT_FILE = "checkpoint_manager_snapshot.json"  # Ray Train's list of a run's checkpoints (Ray 2.60)


def repair_snapshot(store: str) -> tuple[str, int] | None:
    """Check Ray Train's run snapshot before a run continues; set a damaged one aside.

    Ray writes the snapshot in place (not atomically), so a kill or a full disk can leave it
    truncated, and a snapshot can name a checkpoint folder that is gone; either way Ray Train
    refuses to start. A damaged snapshot is renamed ``SNAPSHOT.damaged-N`` (kept for a look) and
    the run continues from the newest complete checkpoint folder, which the workers load as an
    explicit resume point, with one line saying so.

    Returns:
        ``(checkpoint folder URI, its step)`` to continue from when the snapshot was set aside
        (``("", 0)`` when no complete folder is left), or None when the snapshot is sound or absent.
    """
    import zipfile

    from vloss.checkpoint import META_FILE, STATE_FILE

    storage = locate(store).child("ray_train")
    snap = storage.child(SNAPSHOT_FILE)
    if not snap.is_file():
        return None
    folders = set(storage.list_dirs())
    try:
        state = read_json(snap)
        names = [r["checkpoint_dir_name"] for r in state["checkpoint_results"]]
        missing = [n for n in names if n not in folders]
        problem = f"it names checkpoint folders that are gone ({', '.join(missing[:3])})" if missing else None
    except (ValueError, KeyError, TypeError) as exc:
        problem = f"it cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
    if problem is None:
        return None
    newest: tuple[int, str] | None = None
    for name in sorted(folders):
        ckpt = storage.child(name)
        if not (name.startswith("checkpoint_") and ckpt.child(STATE_FILE).is_file()
                and ckpt.child(META_FILE).is_file()):
            continue
        try:
            step = int(read_json(ckpt.child(META_FILE))["global_step"])
            if isinstance(ckpt.fs, pafs.LocalFileSystem):
                with zipfile.ZipFile(ckpt.child(STATE_FILE).path) as zf:  # a truncated state.pt has no directory
                    zf.namelist()
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile):
            continue
        if newest is None or step > newest[0]:
            newest = (step, ckpt.uri)
    n = 1
    while storage.child(f"{SNAPSHOT_FILE}.damaged-{n}").exists():
        n += 1
    aside = storage.child(f"{SNAPSHOT_FILE}.damaged-{n}")
    storage.fs.move(snap.path, aside.path)
    where = f"continuing from the newest complete checkpoint folder {newest[1]}" if newest else \
        "no complete checkpoint folder is left, so the run starts again from step 0"
    print(f"[train] Ray Train's run snapshot {snap.uri} is damaged: {problem}; set aside as {aside.uri}, {where}",
          flush=True)
    return (newest[1], newest[0]) if newest else ("", 0)


def finished_steps(run_dir: str) -> int:
    """Steps a run directory's last completed launch had trained up to (0: none recorded)."""
    path = os.path.join(run_dir, "result.json")
    try:
        with open(path) as f:
            return int(json.load(f).get("steps_done", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def checkpoint_uri(checkpoint: Any) -> str | None:
    """A Ray Train checkpoint's location as the user can pass it on: a local path, or ``s3://...``."""
    if checkpoint is None:
        return None
    fs = getattr(checkpoint, "filesystem", None)
    if fs is None or isinstance(fs, pafs.LocalFileSystem):
        return checkpoint.path
    return f"{fs.type_name}://{checkpoint.path.lstrip('/')}"
