"""Driver side of the tower pretraining: claim the output, fit with Ray Train, write the towers.

The run directory ``OUT`` ends up holding ``backbone.bin`` and ``text.bin`` (the formats of
:mod:`vloss.pretrain.towers`), ``towers.json`` (what they are, how to pass them, the run's
numbers), ``metrics.jsonl`` and ``loss.png`` (the loss curve). Like training, the run is
claimed by its fingerprint (settings less run-length keys, workers, the corpus' identity): a
re-run continues from its latest checkpoint, a finished one reports that it is complete, and
another plan is refused unless ``--overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pyarrow.fs as pafs

from pipelines.common import output_lock
from pipelines.common.errors import StoppedBySignal
from pipelines.common.output_set import claim_output
from pipelines.common.progress import progress_sink
from pipelines.common.ray_env import ensure_ray
from pipelines.common.shared_paths import check_shared
from pipelines.common.storage import locate
from pipelines.train.config import ClusterConfig
from pipelines.train.failures import TrainingStoppedError, restart_attempts, stopped_message
from pipelines.train.job import check_cluster
from pipelines.train.pretrain.corpus import BatchPlan, read_corpus
from pipelines.train.pretrain.worker import build_towers, load_state, pretrain_loop_per_worker
from pipelines.train.progress import TrainingProgress
from pipelines.train.run_dir import checkpoint_uri, run_store
from pipelines.train.stop import GracefulStop, stop_actor
from vloss.config import preset
from vloss.config_io import to_dict
from vloss.pretrain.config import RUN_LENGTH_KEYS, PretrainConfig
from vloss.pretrain.towers import TOWERS_JSON, write_towers

RUN_STATE = ("metrics.jsonl", "tensorboard", "loss.png", TOWERS_JSON, "backbone.bin", "text.bin")


def corpus_identity(captions_json: str, corpus_images: list[str]) -> dict[str, Any]:
    """What identifies a corpus: the captions file's sha256 and every image file's name and size."""
    digest = hashlib.sha256()
    with open(captions_json, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    files = hashlib.sha256()
    for path in corpus_images:
        files.update(f"{os.path.basename(path)}:{os.path.getsize(path)}\n".encode())
    return {"captions_sha256": digest.hexdigest(), "images": len(corpus_images), "image_files": files.hexdigest()}


def fingerprint(pre: PretrainConfig, cluster: ClusterConfig, corpus: dict[str, Any],
                classes: list[str] | None = None) -> dict[str, Any]:
    """The run's identity: its settings (less run-length keys), the towers' sizes, the workers, the
    corpus and the class names of the label objective."""
    settings = {k: v for k, v in to_dict(pre).items() if k not in RUN_LENGTH_KEYS + ("checkpoint_every",)}
    model = preset(pre.preset).model
    backbone = {k: v for k, v in to_dict(model.backbone).items()
                if k not in ("grad_checkpointing", "allow_download")}  # memory / fetching: not the towers
    text = {k: v for k, v in to_dict(model.text).items() if k != "allow_download"}
    return {"pretrain": settings, "towers": {"backbone": backbone, "text": text},
            "workers": cluster.workers, "corpus": corpus, "classes": list(classes or [])}


def finished_steps(out: str) -> int:
    """Steps the towers in ``out`` were written after (0: none)."""
    try:
        with open(os.path.join(out, TOWERS_JSON)) as f:
            return int(json.load(f).get("steps", 0))
    except (OSError, ValueError, TypeError, AttributeError):
        return 0


def loss_curve(out: str) -> str | None:
    """Draw ``OUT/loss.png`` (contrastive and label losses over steps) from ``OUT/metrics.jsonl``
    (None when no row was logged)."""
    rows = []
    path = os.path.join(out, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
    rows = [r for r in rows if "contrastive/total" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3), dpi=100)
    ax.plot([r["step"] for r in rows], [r["contrastive/total"] for r in rows], color="#1f77b4", label="contrastive")
    labelled = [r for r in rows if "labels/total" in r]
    if labelled:
        ax.plot([r["step"] for r in labelled], [r["labels/total"] for r in labelled], color="#d62728", label="labels")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("tower pretraining")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    target = os.path.join(out, "loss.png")
    fig.savefig(target)
    plt.close(fig)
    return target


def run_pretraining(pre: PretrainConfig, captions_json: str, image_dir: str, out: str, cluster: ClusterConfig,
                    overwrite: bool = False, classes: list[str] | None = None) -> dict[str, Any]:
    """Pretrain the towers with Ray Train and write them to ``out``; returns the ``towers.json`` record.

    Args:
        pre: the settings.
        captions_json: the corpus (COCO captions format).
        image_dir: the folder its ``file_name`` entries are relative to.
        out: the run directory (local, or a mount every node shares).
        cluster: workers and their resources (``cluster.storage_path`` keeps checkpoints elsewhere).
        overwrite: replace a run directory that holds another plan.
        classes: class names of the label objective (``pretrain.label_weight``); None: CLIP alone.
    """
    try:
        return _run(pre, captions_json, image_dir, out, cluster, overwrite, classes)
    finally:
        output_lock.release(locate(out))


def _run(pre: PretrainConfig, captions_json: str, image_dir: str, out: str, cluster: ClusterConfig,
         overwrite: bool, classes: list[str] | None) -> dict[str, Any]:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.torch import TorchTrainer

    if cluster.is_elastic():
        raise ValueError("cluster.min_workers: the tower pretraining runs on a fixed number of workers (its batches "
                         "are split by rank); leave min_workers unset")
    out = os.path.abspath(out)
    classes = list(classes or []) if pre.label_weight > 0 else []
    corpus = read_corpus(captions_json, image_dir, classes)
    plan = BatchPlan(len(corpus), pre.batch_size, cluster.workers, pre.epochs, pre.seed)  # refuses before Ray
    total = min(plan.total_steps, pre.max_steps or plan.total_steps)
    ensure_ray()
    check_cluster(cluster)
    store = run_store(out, cluster)
    check_shared({"the corpus captions": captions_json, "the corpus images": image_dir,
                  "the run's storage": store}, "the pretraining job", cluster.shared_fs, "--set cluster.shared_fs=true")
    identity = corpus_identity(captions_json, [str(p) for p in corpus.paths])
    claim = claim_output(out, fingerprint(pre, cluster, identity, classes), overwrite=overwrite,
                         what="a tower pretraining run", command_hint="--overwrite")
    if not claim.resumed:
        _remove_state(out, store)
    done = finished_steps(out)
    if claim.resumed and done >= total:
        print(f"[pretrain] this run is complete: towers written after {done} of {total} steps "
              f"({os.path.join(out, TOWERS_JSON)}); remove {out} to train them again", flush=True)
        with open(os.path.join(out, TOWERS_JSON)) as f:
            return json.load(f)
    print(f"[pretrain] {len(corpus)} image-caption pairs ({corpus.skipped} images without captions skipped); "
          f"{plan.steps_per_epoch} steps of {pre.batch_size} per epoch, {total} steps over {cluster.workers} "
          f"workers", flush=True)
    if classes:
        named = sum(1 for labels in corpus.labels if labels)
        unnamed = [c for i, c in enumerate(classes) if not any(i in labels for labels in corpus.labels)]
        print(f"[pretrain] label objective: {len(classes)} class names, {named} of {len(corpus)} images name one"
              + (f"; never named: {', '.join(unnamed[:8])}" + (" ..." if len(unnamed) > 8 else "") if unnamed
                 else ""), flush=True)
    sink, stop = progress_sink(), stop_actor()
    trainer = TorchTrainer(
        pretrain_loop_per_worker,
        train_loop_config={"pretrain": to_dict(pre), "captions": captions_json, "images": image_dir,
                           "classes": classes, "progress": sink, "stop": stop},
        scaling_config=ScalingConfig(num_workers=cluster.workers, use_gpu=cluster.gpus_per_worker > 0,
                                     resources_per_worker={"CPU": cluster.cpus_per_worker,
                                                           **({"GPU": cluster.gpus_per_worker}
                                                              if cluster.gpus_per_worker else {})}),
        run_config=RunConfig(name="ray_train", storage_path=store,
                             checkpoint_config=CheckpointConfig(num_to_keep=pre.keep_checkpoints),
                             failure_config=FailureConfig(max_failures=cluster.max_failures,
                                                          controller_failure_limit=restart_attempts(cluster))),
    )
    try:
        with GracefulStop(stop, "pretrain", cluster.stop_grace_s), \
                TrainingProgress(sink, total, run_dir=out, label="pretrain"):
            result = trainer.fit()
    except TrainingFailedError as exc:
        raise TrainingStoppedError(stopped_message(exc, cluster, store)) from exc
    if (result.metrics or {}).get("stopped"):
        raise StoppedBySignal(f"stopped by SIGTERM after step {int(result.metrics['step'])} of {total}; its "
                              f"checkpoint {checkpoint_uri(result.checkpoint)} is kept: re-run the same command "
                              f"to continue from it")
    with result.checkpoint.as_directory() as directory:
        state = load_state(directory)
    towers = build_towers(pre)
    towers.load_state_dict(state["model"])
    metrics = {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float, str))}
    info = {"steps": int(state["step"]), "total_steps": plan.total_steps, "epochs": pre.epochs,
            "corpus": {"captions": captions_json, "images": image_dir, "pairs": len(corpus)},
            "classes": len(classes),
            "final": {k: metrics[k] for k in ("contrastive/total", "labels/total", "logit_scale") if k in metrics},
            "settings": to_dict(pre)}
    paths = write_towers(towers, out, info)
    curve = loss_curve(out)
    print(f"[pretrain] towers after {info['steps']} steps: {paths['backbone']} (timm), {paths['text']} (open_clip)"
          + (f"; loss curve {curve}" if curve else ""), flush=True)
    with open(os.path.join(out, TOWERS_JSON)) as f:
        return json.load(f)


def _remove_state(out: str, store: str) -> None:
    """Remove an earlier plan's checkpoints, metrics and towers (a new plan starts clean)."""
    for name in RUN_STATE:
        path = os.path.join(out, name)
        if os.path.isdir(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
    ckpts = locate(store).child("ray_train")
    if ckpts.fs.get_file_info(ckpts.path).type == pafs.FileType.Directory:
        ckpts.fs.delete_dir(ckpts.path)
