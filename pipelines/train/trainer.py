"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (paper Sec. 3.4–3.5, 4.2).

Every rank builds the same ``StepSchedule`` and, step by step, draws a batch from the task it
names — detection (positive-only L_cls + L_bce + L_dice over the Objects365 vocabulary),
panoptic (L_cls over all queries + L_bce + L_dice over the COCO panoptic vocabulary) or
captions (L_con) — so all ranks iterate the same Ray dataset at the same time and DDP sees the
same graph everywhere. The total loss is Eq. 6.

Checkpoints (every ``checkpoint_every`` steps, at every sub-epoch end and at the end) hold the
model, optimizer, LR scheduler, grad scaler, schedule position and the resolved config; they
are reported with ``ray.train.report`` from every rank (rank 0 attaches the files). On start a
worker resumes from ``ray.train.get_checkpoint()`` (a restart after a failure) or from an
explicit checkpoint path, and skips the batches the schedule says were already consumed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Any, Iterator

import torch
import torch.nn as nn

from pipelines.schedule import ScheduleConfig, StepSchedule
from pipelines.train_config import TrainJobConfig, job_from_dict, job_to_dict
from pipelines.train_data import COLLATE
from vloss.losses import ContrastiveLoss, SetCriterion, weighted_total
from vloss.lr_schedule import build_lr_scheduler, build_optimizer
from vloss.model import VLOSS

STATE_FILE = "state.pt"
META_FILE = "meta.json"


class TrainStep(nn.Module):
    """Runs the whole forward of one task inside one module call, so DDP sees it.

    Class embeddings of the task's vocabulary (text encoder, trained at its own lr) and the
    caption embeddings are computed inside ``forward``; gradients of every part then flow
    through DDP's reducer.
    """

    def __init__(self, model: VLOSS, vocabularies: dict[str, list[str]], templates: tuple[str, ...],
                 contrastive: str) -> None:
        super().__init__()
        self.model = model
        self.vocabularies = vocabularies
        self.templates = tuple(templates)
        self.contrastive = contrastive

    def forward(self, task: str, images: torch.Tensor, captions: list[str] | None = None) -> dict[str, Any]:
        if task == "captions":
            out = self.model(images)
            if self.contrastive == "filip":
                # image tokens: the global image embedding and the object queries  [B, 1+Q, Dt]
                img_tokens = torch.cat([out["img_embed"][:, None], out["pred_embeds"]], dim=1)
                txt_tokens, txt_mask = self.model.text.encode_text_tokens(captions)
                return {"img": img_tokens, "text": txt_tokens, "text_mask": txt_mask,
                        "scale": self.model.logit_scale_img_text()}
            # the temperature is read here too: a parameter used outside forward breaks DDP
            return {"img": out["img_embed"], "text": self.model.encode_captions(captions),
                    "scale": self.model.logit_scale_img_text()}
        class_embeds = self.model.class_embeddings(self.vocabularies[task], self.templates)  # [C, Dt]
        return self.model(images, class_embeds)


def _autocast(amp: str, device: torch.device):
    if amp == "auto":
        amp = "bf16" if device.type == "cuda" else "off"
    if amp == "off":
        return torch.autocast(device.type, enabled=False), False
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16), False
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError("train.amp=fp16 needs a GPU; use bf16 or off on CPU")
        return torch.autocast(device.type, dtype=torch.float16), True
    raise ValueError(f"train.amp must be auto, bf16, fp16 or off, got {amp!r}")


class TaskStreams:
    """One batch iterator per task, positioned by the schedule's data cursors.

    A cursor says "batch ``b`` of pass ``p``". A new pass opens a new ``iter_torch_batches``
    (a barrier across ranks, which all ranks reach at the same step); after a resume the
    already-consumed batches of the current pass are read and dropped.
    """

    def __init__(self, shards: dict[str, Any], batch_sizes: dict[str, int], device: torch.device) -> None:
        self.shards, self.batch_sizes, self.device = shards, batch_sizes, device
        self._state: dict[str, tuple[int, int, Iterator]] = {}  # task -> (pass, next batch, iterator)
        self.wait_s = 0.0

    def _open(self, task: str) -> Iterator:
        return iter(self.shards[task].iter_torch_batches(
            batch_size=self.batch_sizes[task], collate_fn=COLLATE[task], drop_last=True, prefetch_batches=2))

    def next(self, task: str, pass_index: int, batch_index: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        state = self._state.get(task)
        if state is None or state[0] != pass_index or state[1] > batch_index:
            state = (pass_index, 0, self._open(task))
        p, b, it = state
        while b < batch_index:  # resume: drop batches this pass already trained on
            next(it)
            b += 1
        try:
            batch = next(it)
        except StopIteration as e:
            raise RuntimeError(f"dataset '{task}' ran out at batch {b} of pass {p}: the schedule expected "
                               f"more rows than the shard holds (did the shards change since the run "
                               f"started?)") from e
        self._state[task] = (p, b + 1, it)
        self.wait_s += time.perf_counter() - t0
        return batch


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    batch["images"] = batch["images"].to(device, non_blocking=True)
    if "targets" in batch:
        batch["targets"] = [{k: v.to(device) for k, v in t.items()} for t in batch["targets"]]
    return batch


def _save_checkpoint(path: str, model: nn.Module, optimizer, scheduler, scaler, schedule: StepSchedule,
                     job: dict, extra: dict) -> None:
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "lr_scheduler": scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
             "schedule": schedule.state_dict(), "optimizer_steps": extra["optimizer_steps"]}
    torch.save(state, os.path.join(path, STATE_FILE))
    with open(os.path.join(path, META_FILE), "w") as f:
        json.dump({"config": job, **extra}, f, indent=1)


def load_training_state(ckpt_dir: str) -> tuple[dict, dict]:
    """(state, meta) of a training checkpoint directory; tensors loaded with weights_only."""
    state = torch.load(os.path.join(ckpt_dir, STATE_FILE), map_location="cpu", weights_only=True)
    with open(os.path.join(ckpt_dir, META_FILE)) as f:
        meta = json.load(f)
    return state, meta


class MetricsWriter:
    """JSON lines + TensorBoard events under the run directory (rank 0 only)."""

    def __init__(self, run_dir: str | None) -> None:
        self.path = self.tb = None
        if run_dir:
            os.makedirs(run_dir, exist_ok=True)
            self.path = os.path.join(run_dir, "metrics.jsonl")
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(os.path.join(run_dir, "tensorboard"))
            except ImportError:  # tensorboard is a declared dependency; keep JSON lines regardless
                self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        if self.path:
            with open(self.path, "a") as f:
                f.write(json.dumps(row) + "\n")
        if self.tb:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{row['task']}/{k}", v, row["step"])
            self.tb.flush()


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train entry point. ``loop_config``: ``job`` (TrainJobConfig dict), ``schedule``
    (ScheduleConfig dict), ``vocabularies`` ({task: names}), ``run_dir``, ``resume_from``."""
    import ray.train
    import ray.train.torch

    job: TrainJobConfig = job_from_dict(loop_config["job"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(job.seed)
    device = ray.train.torch.get_device()
    schedule = StepSchedule(ScheduleConfig.from_dict(loop_config["schedule"]))
    tasks = schedule.config.tasks_used()

    model = VLOSS(job.model)
    step_module = TrainStep(model, loop_config["vocabularies"], job.train.templates, job.loss.contrastive)
    if world > 1:
        wrapped = ray.train.torch.prepare_model(step_module, parallel_strategy_kwargs={"find_unused_parameters": True})
    else:
        wrapped = step_module.to(device)
    optimizer = build_optimizer(model, job.optim)
    scheduler = build_lr_scheduler(optimizer, schedule.total_steps, job.optim)
    autocast, use_scaler = _autocast(job.train.amp, device)
    scaler = torch.amp.GradScaler(device.type) if use_scaler else None
    criterion = SetCriterion(job.loss)
    contrastive = ContrastiveLoss.from_config(job.loss)
    if world == 1:
        contrastive.gather = False

    optimizer_steps = 0
    ckpt = ray.train.get_checkpoint()
    resume_dir = None
    if ckpt is not None:
        resume_dir = ckpt.to_directory()
    elif loop_config.get("resume_from"):
        resume_dir = loop_config["resume_from"]
    if resume_dir:
        state, _ = load_training_state(resume_dir)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["lr_scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        schedule.load_state_dict(state["schedule"])
        optimizer_steps = int(state["optimizer_steps"])
    start = schedule.next_position

    shards = {t: ray.train.get_dataset_shard(t) for t in tasks}  # same order on every rank
    streams = TaskStreams(shards, {t: job.train.batch_size(t) for t in tasks}, device)
    writer = MetricsWriter(loop_config.get("run_dir") if rank == 0 else None)
    job_dict = job_to_dict(job)
    max_steps = job.train.max_steps
    t_window, images_window, steps_this_run = time.perf_counter(), 0, 0
    sums: dict[str, dict[str, float]] = {}
    fail_marker = os.path.join(loop_config.get("run_dir") or tempfile.gettempdir(), ".fail_hook_fired")

    for epoch, step, task in schedule.iter_from(*start):
        g = schedule.global_step(epoch, step)
        if job.train.fail_at_step == g and rank == min(1, world - 1) and not os.path.exists(fail_marker):
            open(fail_marker, "w").close()
            os._exit(1)  # test hook: a worker dies mid-run
        cursor = schedule.cursor(epoch, step)
        batch = _to_device(streams.next(task, cursor.pass_index, cursor.batch_index), device)
        model.train()
        with autocast:
            if task == "captions":
                out = wrapped("captions", batch["images"], batch["captions"])
            else:
                out = wrapped(task, batch["images"])
        if task == "captions":
            scale = out["scale"].float()
            if job.loss.contrastive == "filip":
                losses = contrastive(out["img"].float(), out["text"].float(), scale, None, out["text_mask"])
            else:
                losses = contrastive(out["img"].float(), out["text"].float(), scale)
        else:
            out = {k: (v.float() if torch.is_tensor(v) else v) for k, v in out.items()}
            out["aux_outputs"] = [{k: v.float() for k, v in a.items() if torch.is_tensor(v)}
                                  for a in out["aux_outputs"]]
            positive_only = task == "detection" and job.loss.positive_only_detection
            losses = criterion(out, batch["targets"], positive_only=positive_only)
        total = weighted_total(losses, job.loss)
        if not torch.isfinite(total):
            raise FloatingPointError(f"non-finite loss at epoch {epoch} step {step} ({task}): "
                                     f"{ {k: float(v) for k, v in losses.items()} }")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
        else:
            total.backward()
        if job.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), job.train.grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer_steps += 1
        schedule.mark_done(epoch, step)
        steps_this_run += 1
        images_window += batch["images"].shape[0] * world

        acc = sums.setdefault(task, {"n": 0})
        acc["n"] += 1
        for k in ("loss_cls", "loss_bce", "loss_dice", "loss_con"):
            if k in losses:
                acc[k] = acc.get(k, 0.0) + float(losses[k].detach())
        acc["total"] = acc.get("total", 0.0) + float(total.detach())

        last = (g + 1 == schedule.total_steps) or (max_steps and steps_this_run >= max_steps)
        sub_end = schedule.sub_epoch_end(epoch, step)
        do_ckpt = bool(last or sub_end is not None or (g + 1) % job.train.checkpoint_every == 0)
        do_log = bool(do_ckpt or (g + 1) % job.train.log_every == 0)
        if do_log:
            elapsed = time.perf_counter() - t_window
            metrics: dict[str, Any] = {"step": g + 1, "epoch": epoch, "task": task,
                                       "optimizer_steps": optimizer_steps,
                                       "lr": optimizer.param_groups[0]["lr"],
                                       "lr_text": min(pg["lr"] for pg in optimizer.param_groups),
                                       "images_per_s": images_window / max(elapsed, 1e-9),
                                       "data_wait_frac": min(1.0, streams.wait_s / max(elapsed, 1e-9))}
            for t, a in sums.items():
                for k, v in a.items():
                    if k != "n":
                        metrics[f"{t}/{k}"] = v / a["n"]
            if rank == 0:
                writer.write(metrics)
                parts = " ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                                 if isinstance(v, float) and "/" in k and k.endswith("total"))
                print(f"[train] step {g + 1}/{schedule.total_steps} epoch {epoch} {task:9s} {parts} "
                      f"lr={metrics['lr']:.3g} {metrics['images_per_s']:.1f} img/s "
                      f"data-wait {100 * metrics['data_wait_frac']:.0f}%", flush=True)
            sums, images_window, streams.wait_s, t_window = {}, 0, 0.0, time.perf_counter()
            checkpoint = None
            tmp = None
            if do_ckpt and rank == 0:
                tmp = tempfile.mkdtemp(prefix="vloss-ckpt-")
                _save_checkpoint(tmp, model, optimizer, scheduler, scaler, schedule, job_dict,
                                 {"optimizer_steps": optimizer_steps, "global_step": g + 1, "epoch": epoch,
                                  "sub_epoch": sub_end.name if sub_end else None,
                                  "vocabularies": loop_config["vocabularies"]})
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report({**{k: v for k, v in metrics.items() if not isinstance(v, str)}, "task": task},
                             checkpoint=checkpoint)
            if tmp is not None:  # report() uploads synchronously; the staging copy is no longer needed
                shutil.rmtree(tmp, ignore_errors=True)
        if last:
            break
