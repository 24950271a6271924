"""The training loop of one worker, as a small ``Trainer`` made of components (paper Sec. 3.4-3.5, 4.2).

Every rank builds the same :class:`~pipelines.train.schedule.StepSchedule` and, step by step,
draws a batch from the task it names (detection, panoptic or captions), so all ranks iterate the
same Ray dataset at the same time and DDP sees the same graph everywhere. What a step computes is
:class:`vloss.training.step.TaskForward` + :func:`vloss.training.step.compute_losses`; the total
is Eq. 6.

The trainer knows nothing of Ray: what it needs from the runtime (rank, device, the dataset
shards, DDP wrapping, reporting a checkpoint, the checkpoint to restore) comes in a
:class:`WorkerRuntime`, which :mod:`pipelines.train.worker` builds from Ray Train.

Checkpoints (every ``train.checkpoint_every`` steps, at every sub-epoch end unless
``train.checkpoint_sub_epochs`` is off, at every validation and at the end) hold
the model, optimizer, LR scheduler, grad scaler, schedule position and the resolved config, in
the format of :mod:`vloss.checkpoint`. On start the trainer restores from the
runtime's checkpoint (a restart after a failure) or from an explicit checkpoint path, and skips
the batches the schedule says were already consumed.

Validation (Sec. 4.1): every ``train.eval_every`` epochs and at the end of the run, rank 0 scores
PQ on the panoptic val split (:mod:`pipelines.train.validation`); the values join that step's
metrics (``val/pq``, ...), and a checkpoint that beats the best so far is copied to
``STORE/best_checkpoint`` (kept besides Ray Train's latest ``keep_checkpoints``) with
``STORE/best.json`` describing it. ``STORE`` is the run's storage, which every node can write
(the run directory, a shared mount or an ``s3://`` prefix); under Ray Train the driver, not a
worker, writes the metrics into the run directory (worker and driver may be different machines).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence

import torch
import torch.nn as nn

from pipelines.common.remote import fetch, is_remote, publish
from pipelines.common.storage import Location, locate, read_json, write_json_atomic
from pipelines.train.metrics import MetricsWriter
from pipelines.train.schedule import StepSchedule
from pipelines.train.streams import OpenPass, TaskStreams
from pipelines.train.validation import PanopticValidator, ValSplit
from vloss.checkpoint import load_training_checkpoint, save_training_checkpoint
from vloss.config import TrainJobConfig
from vloss.losses import LOSS_TERMS, ContrastiveLoss, SetCriterion
from vloss.model import VLOSS
from vloss.training.accumulate import forward_backward
from vloss.training.optim import build_lr_scheduler, build_optimizer
from vloss.training.step import TaskForward, autocast_context

BEST_DIR = "best_checkpoint"
BEST_FILE = "best.json"


@dataclass
class WorkerRuntime:
    """What the trainer needs from the distributed runtime.

    Args:
        rank: this worker's global rank.
        world_size: number of workers.
        device: the device this worker trains on.
        open_pass: ``open_pass(task, pass_index, skip_batches)`` -> this worker's batches of that
            pass (:data:`pipelines.train.streams.OpenPass`).
        wrap_model: turns the step module into its distributed form (DDP), or returns it.
        report: ``report(metrics, checkpoint_dir or None)``, called on every rank at every log step.
        restored_checkpoint: a context manager giving the directory of the checkpoint to restore
            after a restart (None when there is none).
        progress: where rank 0 sends each logged metrics row for the driver to draw (None: print it).
        stop_requested: called after every step on every rank; True (the same on all ranks) when the
            driver was asked to stop (SIGTERM, :mod:`pipelines.train.stop`); None: never.
        report_removes_checkpoint: ``report`` returns before the checkpoint is uploaded and removes
            the local folder itself once it is (Ray Train's asynchronous upload); False: the upload is
            done when ``report`` returns and the trainer removes the folder.
    """

    rank: int
    world_size: int
    device: torch.device
    open_pass: OpenPass
    wrap_model: Callable[[nn.Module], nn.Module]
    report: Callable[[dict[str, Any], str | None], None]
    restored_checkpoint: Callable[[], ContextManager[str | None]]
    progress: Callable[[dict[str, Any]], None] | None = None
    stop_requested: Callable[[], bool] | None = None
    report_removes_checkpoint: bool = False


class Trainer:
    """Set-up, restore, step, log/checkpoint and fit for one worker.

    Args:
        job: the resolved training config.
        schedule: the step schedule (identical on every rank).
        vocabularies: class names per dense task.
        runtime: what the runtime provides (see :class:`WorkerRuntime`).
        run_dir: where rank 0 writes ``metrics.jsonl`` and TensorBoard events (None: nowhere;
            under Ray Train the driver writes them from the progress rows).
        resume_from: an explicit checkpoint directory to start from (used when the runtime has
            none to restore).
        val: the panoptic val split (None: no validation, whatever ``train.eval_every`` says).
        store: where rank 0 keeps the best checkpoint and ``best.json`` (a path or URI every
            node can reach; default ``run_dir``).
        step_hooks: called on every rank before each step as ``hook(global_step, rank, world_size,
            store)``: how the fault drills stop a worker, from the tests, not from a config field.
    """

    def __init__(self, job: TrainJobConfig, schedule: StepSchedule, vocabularies: dict[str, list[str]],
                 runtime: WorkerRuntime, run_dir: str | None = None, resume_from: str | None = None,
                 val: ValSplit | None = None, store: str | None = None,
                 step_hooks: Sequence[Callable[[int, int, int, str | None], None]] = ()) -> None:
        self.job, self.schedule, self.vocabularies = job, schedule, vocabularies
        self.step_hooks = tuple(step_hooks)
        self.rt, self.run_dir, self.resume_from = runtime, run_dir, resume_from
        self.store = store or run_dir
        self.val = val
        self.optimizer_steps = 0
        self.best: dict[str, Any] | None = None
        self._batches: list[dict[str, Any]] = []  # train.record_batches, since the last metric row
        self.setup()

    # ---- set-up and restore ------------------------------------------------------------
    def setup(self) -> None:
        """Model (seeded identically on every rank), DDP wrapper, optimizer, LR schedule, losses."""
        job, rt = self.job, self.rt
        torch.manual_seed(job.seed)
        self.model = VLOSS(job.model)
        step_module = TaskForward(self.model, self.vocabularies, job.model.text.templates, job.loss.contrastive)
        self.forward = rt.wrap_model(step_module)
        self.optimizer = build_optimizer(self.model, job.optim)
        # one LR schedule per training stage ("pretrain": pretraining, then its own fine-tune schedule)
        self.scheduler = build_lr_scheduler(self.optimizer, self.schedule.stage_lengths, job.optim)
        self.autocast, use_scaler = autocast_context(job.train.amp, rt.device)
        self.scaler = torch.amp.GradScaler(rt.device.type) if use_scaler else None
        self.criterion = SetCriterion(job.loss)
        self.contrastive = ContrastiveLoss.from_config(job.loss)
        if rt.world_size == 1:
            self.contrastive.gather = False
        self.streams = TaskStreams(rt.open_pass, rt.device)
        self.writer = MetricsWriter(self.run_dir if rt.rank == 0 else None)
        self.validator = None
        if rt.rank == 0 and self.val is not None and job.train.eval_every > 0:
            self.validator = PanopticValidator(self.val, job.input.dense_size, limit=job.train.val_images,
                                               batch_size=job.train.val_batch_size)

    def restore(self) -> None:
        """Load the runtime's checkpoint (restart) or ``resume_from``, if either exists."""
        with self.rt.restored_checkpoint() as restored:
            directory = restored or (fetch(self.resume_from, "--resume") if self.resume_from else None)
            if not directory:
                return
            try:
                state, _ = load_training_checkpoint(directory)
            except (ValueError, FileNotFoundError, OSError) as exc:
                if not restored:  # an explicit --resume: the user's file, say so
                    raise
                state = self._earlier_checkpoint(directory, exc)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["lr_scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.schedule.load_state_dict(state["schedule"])
        self.optimizer_steps = int(state["optimizer_steps"])
        if self.rt.rank == 0 and self.store and locate(self.store).child(BEST_FILE).is_file():
            self.best = read_json(locate(self.store).child(BEST_FILE))

    def _earlier_checkpoint(self, damaged: str, exc: BaseException) -> dict[str, Any]:
        """The state of the newest loadable checkpoint of this run older than ``damaged`` (a
        truncated latest checkpoint, a disk that filled up mid-write): every rank picks the same."""
        storage = locate(self.store).child("ray_train") if self.store else None
        names = sorted((n for n in (storage.list_dirs() if storage else []) if n.startswith("checkpoint_")),
                       reverse=True)
        bad = os.path.basename(os.path.normpath(damaged))
        for name in names:
            if name >= bad:
                continue
            try:
                state, meta = load_training_checkpoint(fetch(storage.child(name).uri, "checkpoint"))
            except (ValueError, FileNotFoundError, OSError):
                continue
            if self.rt.rank == 0:
                print(f"[train] the latest checkpoint {bad} cannot be loaded ({exc}); continuing from the "
                      f"earlier {name} (step {meta.get('global_step')})", flush=True)
            return state
        raise ValueError(f"the latest checkpoint {damaged} cannot be loaded ({exc}) and no earlier one of this run "
                         f"can; --overwrite starts the run again") from exc

    # ---- one step ------------------------------------------------------------------------
    def train_step(self, epoch: int, step: int, task: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, int]:
        """Forward, Eq. 6, backward and the optimizer step of (epoch, step).

        Returns:
            (the unweighted loss terms, the total, images in this worker's batch).
        """
        # per-step, per-rank torch seed: drop-path differs across ranks (as in detectron2) and a resumed
        # run draws what the uninterrupted one drew at the same step; the losses' points are drawn per
        # image of the global batch (vloss.training.accumulate.image_generators)
        g = self.schedule.global_step(epoch, step)
        torch.manual_seed(step_seed(self.job.seed, self.rt.rank, g))
        cursor = self.schedule.cursor(epoch, step)
        batch = _to_device(self.streams.next(task, cursor.pass_index, cursor.batch_index), self.rt.device)
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        # micro-batches of train.micro_batch images, gradients accumulated (vloss.training.accumulate)
        split = self.job.train.rank_batch_sizes(task, self.rt.world_size)
        losses, total = forward_backward(self.forward, task, batch, micro=self.job.train.micro_batch,
                                         run_seed=self.job.seed, global_step=g, first_image=sum(split[:self.rt.rank]),
                                         num_queries=self.job.model.decoder.num_queries, loss_cfg=self.job.loss,
                                         criterion=self.criterion, contrastive=self.contrastive,
                                         autocast=self.autocast, scaler=self.scaler,
                                         where=f"at epoch {epoch} step {step} ")
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.job.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.job.train.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer_steps += 1
        self.schedule.mark_done(epoch, step)
        if self.job.train.record_batches:
            self._record(schedule_step=g, task=task, ids=batch["image_ids"])
        return losses, total, int(batch["images"].shape[0])

    def _record(self, schedule_step: int, task: str, ids: list[int]) -> None:
        """``train.record_batches``: rank 0 keeps every rank's image ids of this step for the next metric row."""
        per_rank = [list(map(int, ids))]
        if self.rt.world_size > 1 and torch.distributed.is_initialized():
            per_rank = [None] * self.rt.world_size
            torch.distributed.all_gather_object(per_rank, list(map(int, ids)))
        if self.rt.rank == 0:
            self._batches.append({"step": schedule_step + 1, "task": task, "image_ids": per_rank})

    # ---- log and checkpoint --------------------------------------------------------------
    def save_checkpoint(self, directory: str, global_step: int, epoch: int, sub_epoch: str | None) -> None:
        """Write this worker's full training state to ``directory`` (the checkpoint format)."""
        save_training_checkpoint(directory, model=self.model, optimizer=self.optimizer, lr_scheduler=self.scheduler,
                                 scaler=self.scaler, schedule=self.schedule, optimizer_steps=self.optimizer_steps,
                                 job=self.job, global_step=global_step, epoch=epoch, sub_epoch=sub_epoch,
                                 vocabularies=self.vocabularies)

    def _metrics(self, global_step: int, epoch: int, task: str, sums: dict, images: int, elapsed: float) -> dict:
        metrics: dict[str, Any] = {"step": global_step, "epoch": epoch, "task": task, "time": time.time(),
                                   "optimizer_steps": self.optimizer_steps, "workers": self.rt.world_size,
                                   "lr": self.optimizer.param_groups[0]["lr"],
                                   "lr_text": min(pg["lr"] for pg in self.optimizer.param_groups),
                                   "images_per_s": images / max(elapsed, 1e-9),
                                   "data_wait_frac": min(1.0, self.streams.wait_s / max(elapsed, 1e-9))}
        for t, a in sums.items():
            for k, v in a.items():
                if k != "n":
                    metrics[f"{t}/{k}"] = v / a["n"]
        if self._batches:
            metrics["batches"], self._batches = self._batches, []
        return metrics


    def validate(self) -> dict[str, float]:
        """Rank 0: PQ of the current weights on the val split, as ``val/*`` metrics."""
        result = self.validator(self.model, self.rt.device)
        return {f"val/{k}": v for k, v in result.items() if k != "images"}

    def _keep_if_best(self, staging: str, metrics: dict) -> None:
        """Copy the staged checkpoint to ``STORE/best_checkpoint`` when its val PQ is the best so far."""
        pq = metrics.get("val/pq")
        if pq is None or not self.store or (self.best is not None and pq <= self.best["val/pq"]):
            return
        dest = copy_checkpoint_dir(staging, locate(self.store).child(BEST_DIR))
        self.best = {"val/pq": pq, "step": metrics["step"], "epoch": metrics["epoch"], "path": dest,
                     **{k: v for k, v in metrics.items() if k.startswith("val/")}}
        write_json_atomic(locate(self.store).child(BEST_FILE), self.best)  # written last: it names a complete copy

    def log_and_checkpoint(self, metrics: dict, checkpoint: bool, epoch: int, sub_epoch: str | None) -> None:
        """Write the metrics (rank 0), report them on every rank, with a checkpoint when asked."""
        if self.rt.rank == 0:
            self.writer.write(metrics)
            if self.rt.progress is not None:
                self.rt.progress({**metrics, "total_steps": self.schedule.total_steps})
            else:
                print(metrics_line(metrics, self.schedule.total_steps), flush=True)
        staging = None
        if checkpoint and self.rt.rank == 0:
            staging = tempfile.mkdtemp(prefix="vloss-ckpt-")
            self.save_checkpoint(staging, metrics["step"], epoch, sub_epoch)
            self._keep_if_best(staging, metrics)
        try:
            self.rt.report({**{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                            "task": metrics["task"]}, staging)
        except BaseException:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            raise
        if staging is not None and not self.rt.report_removes_checkpoint:
            shutil.rmtree(staging, ignore_errors=True)  # uploaded: the staging copy is no longer needed

    # ---- the loop ------------------------------------------------------------------------
    def fit(self) -> None:
        """Restore, then run the schedule from its next position to the end (or step ``train.max_steps``)."""
        self.restore()
        schedule, train = self.schedule, self.job.train
        t_window, images_window, steps_this_run = time.perf_counter(), 0, 0
        sums: dict[str, dict[str, float]] = {}
        stage_starts = set(schedule.stage_starts[1:])
        for epoch, step, task in schedule.iter_from(*schedule.next_position):
            g = schedule.global_step(epoch, step)
            for hook in self.step_hooks:  # installed by the caller (the fault drills), never by a config
                hook(g, self.rt.rank, self.rt.world_size, self.store)
            if g in stage_starts and train.reset_optimizer_between_stages:
                self.optimizer.state.clear()  # the fine-tune starts with fresh AdamW moments
            losses, total, n_images = self.train_step(epoch, step, task)
            steps_this_run += 1
            images_window += n_images * self.rt.world_size
            acc = sums.setdefault(task, {"n": 0})
            acc["n"] += 1
            for k in LOSS_TERMS:  # the final layer's terms (deep-supervision copies are summed in total)
                if k in losses:
                    acc[k] = acc.get(k, 0.0) + float(losses[k].detach())
            acc["total"] = acc.get("total", 0.0) + float(total.detach())

            last = (g + 1 == schedule.total_steps) or bool(train.max_steps and g + 1 >= train.max_steps)
            sub_end = schedule.sub_epoch_end(epoch, step)
            epoch_end = step + 1 == schedule.steps_in_epoch(epoch)
            do_val = bool(train.eval_every > 0 and self.val is not None
                          and (last or (epoch_end and (epoch + 1) % train.eval_every == 0)))
            do_ckpt = bool(last or do_val or (sub_end is not None and train.checkpoint_sub_epochs)
                           or (g + 1) % train.checkpoint_every == 0)
            stop = not last and self.rt.stop_requested is not None and self.rt.stop_requested()
            if stop or do_ckpt or (g + 1) % train.log_every == 0:
                metrics = self._metrics(g + 1, epoch, task, sums, images_window, time.perf_counter() - t_window)
                if do_val and self.rt.rank == 0:
                    metrics.update(self.validate())
                if stop:
                    metrics["stopped"] = 1  # SIGTERM: this step's checkpoint ends the launch
                sums, images_window, self.streams.wait_s = {}, 0, 0.0
                self.log_and_checkpoint(metrics, do_ckpt or stop, epoch, sub_end.name if sub_end else None)
                t_window = time.perf_counter()
            if last or stop:
                break


def step_seed(seed: int, rank: int, global_step: int) -> int:
    """The torch seed of one rank's step (a function of the run's seed, the rank and the step)."""
    import hashlib

    digest = hashlib.sha256(f"{seed}/{rank}/{global_step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFFFFFFFFFFFFFF


def metrics_line(metrics: dict[str, Any], total_steps: int, label: str = "train") -> str:
    """One console line for a logged step: losses per task, lr, throughput, validation (``label``: the stage)."""
    parts = " ".join(f"{k.split('/')[0]}={v:.4g}" for k, v in metrics.items()
                     if isinstance(v, float) and "/" in k and k.endswith("total"))
    line = (f"[{label}] step {metrics['step']}/{total_steps} epoch {metrics['epoch']} {metrics['task']:9s} {parts} "
            f"lr={metrics['lr']:.3g} {metrics['images_per_s']:.1f} img/s "
            f"data-wait {100 * metrics['data_wait_frac']:.0f}%")
    if "val/pq" in metrics:
        line += (f"  val PQ {100 * metrics['val/pq']:.1f} (th {100 * metrics['val/pq_th']:.1f}, "
                 f"st {100 * metrics['val/pq_st']:.1f})")
    return line


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    batch["images"] = batch["images"].to(device, non_blocking=True)
    if "targets" in batch:
        batch["targets"] = [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in batch["targets"]]
    return batch



def copy_checkpoint_dir(src: str, dest: Location) -> str:
    """Copy the local checkpoint folder ``src`` to ``dest`` (local or object store); returns its path or URI.

    Local: a complete copy is renamed into place (the old one removed after). Object store:
    :func:`~pipelines.common.remote.publish` (one PUT per file, objects of an older copy that the
    new one lacks removed); ``best.json``, written after, is what says which step the folder holds.
    """
    if not is_remote(dest.uri):
        tmp = dest.path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        old = dest.path + ".old"
        if os.path.exists(dest.path):
            os.replace(dest.path, old)
        os.replace(tmp, dest.path)
        shutil.rmtree(old, ignore_errors=True)
        return dest.path
    publish(src, dest.uri)
    return dest.uri
