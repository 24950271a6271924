"""The checkpoint format, in one place: written by training, read by training, evaluation and tools.

A *training checkpoint* is a directory (what Ray Train stores and reports)::

    state.pt    torch.save of {"model", "optimizer", "lr_scheduler", "scaler", "schedule",
                "optimizer_steps"}; loaded with ``weights_only=True``
    meta.json   {"config": the resolved TrainJobConfig, "global_step", "epoch", "sub_epoch",
                "optimizer_steps", "vocabularies", ...}

A *weights file* is one file from :func:`vloss.model.save_model_weights`:
``{"model": state dict, "config": the job config (or, in older files, the model+loss config)}``,
or a bare state dict (then the caller names a preset).

:func:`load_model_checkpoint` accepts either and returns the network's tensors with the whole
resolved job config, which is what every consumer of a trained model needs (evaluation,
prediction, export).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vloss.safe_load import safe_torch_load

# the old private name, still imported by pipelines/train/pretrain/worker.py
_torch_load = safe_torch_load

STATE_FILE = "state.pt"
META_FILE = "meta.json"


def save_training_checkpoint(directory: str | os.PathLike, *, model: Any, optimizer: Any, lr_scheduler: Any,
                             scaler: Any, schedule: Any, optimizer_steps: int, job: Any, **meta: Any) -> None:
    """Write a training checkpoint directory (the one definition of what it holds).

    Args:
        directory: an existing (staging) directory.
        model: the network (``nn.Module``; its ``state_dict`` is saved).
        optimizer, lr_scheduler: their ``state_dict`` is saved.
        scaler: the fp16 grad scaler, or None.
        schedule: the :class:`~pipelines.train.schedule.StepSchedule` (its position is saved).
        optimizer_steps: optimizer steps taken so far.
        job: the resolved :class:`vloss.config.TrainJobConfig`.
        **meta: further JSON-able metadata (``global_step``, ``epoch``, ``sub_epoch``, ``vocabularies``).
    """
    import torch

    from vloss.config_io import to_dict

    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "lr_scheduler": lr_scheduler.state_dict(), "scaler": scaler.state_dict() if scaler else None,
             "schedule": schedule.state_dict(), "optimizer_steps": int(optimizer_steps)}
    torch.save(state, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, META_FILE), "w") as f:
        json.dump({"config": to_dict(job), "optimizer_steps": int(optimizer_steps), **meta}, f, indent=1)


def is_training_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a directory holding both checkpoint files."""
    p = Path(path)
    return (p / STATE_FILE).is_file() and (p / META_FILE).is_file()


def load_training_checkpoint(directory: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state, meta)`` of a training checkpoint directory; tensors loaded with ``weights_only=True``.

    Raises:
        FileNotFoundError: the directory lacks one of the two files (names both).
    """

    p = Path(directory)
    if not is_training_checkpoint(p):
        raise FileNotFoundError(f"{p}: a training checkpoint directory needs {STATE_FILE} and {META_FILE}")
    state = safe_torch_load(p / STATE_FILE)
    try:
        with open(p / META_FILE) as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p / META_FILE}: not valid JSON ({exc})") from exc
    return state, meta


@dataclass
class ModelCheckpoint:
    """A trained network as its consumers see it.

    Args:
        path: the checkpoint directory or weights file.
        kind: ``"training checkpoint"`` or ``"weights file"``.
        job: the resolved :class:`vloss.config.TrainJobConfig` the network was trained with.
        state_dict: the network's tensors (CPU).
    """

    path: Path
    kind: str
    job: Any
    state_dict: dict[str, Any]


def load_model_checkpoint(checkpoint: str | os.PathLike, preset: str | None = None,
                          overrides: list[str] | None = None) -> ModelCheckpoint:
    """Read a training checkpoint directory or a weights file.

    Args:
        checkpoint: a directory written by the trainer, or a file from ``save_model_weights``.
        preset: for a weights file: ``tiny`` | ``paper`` | ``baseline`` instead of the config
            stored in the file (required when it stores none). Ignored for a directory.
        overrides: ``key=value`` overrides applied to the job config (e.g. the prompt templates).

    Raises:
        FileNotFoundError: no such checkpoint.
        WeightsError: the file holds no state dict.
        ValueError: a weights file without stored config and no ``preset``; bad overrides.
    """

    from vloss.config import TrainJobConfig, job_preset
    from vloss.config_io import apply_overrides, from_dict
    from vloss.model import WeightsError

    path = Path(checkpoint)
    if path.is_dir():
        state, meta = load_training_checkpoint(path)
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise WeightsError(f"{path / STATE_FILE}: no 'model' state dict inside")
        if not isinstance(meta.get("config"), dict):
            raise ValueError(f"{path / META_FILE}: no 'config' (the training job's resolved config)")
        job = from_dict(meta["config"], TrainJobConfig)
        result = ModelCheckpoint(path, "training checkpoint", job, state["model"])
    else:
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        payload = safe_torch_load(path)
        if not isinstance(payload, dict):
            raise WeightsError(f"{path}: expected a state dict (mapping), found {type(payload).__name__}")
        sd = payload["model"] if isinstance(payload.get("model"), dict) else payload
        if preset is not None:
            job = job_preset(preset)
        elif isinstance(payload.get("config"), dict):
            stored = payload["config"]
            job = from_dict(stored if "model" in stored else {"model": stored}, TrainJobConfig)
            if "input" not in stored:
                job = _with_preset_run_settings(job)
        else:
            raise ValueError(f"{path}: the weights file stores no config; pass --config tiny|paper|baseline")
        result = ModelCheckpoint(path, "weights file", job, sd)
    if overrides:
        apply_overrides(result.job, list(overrides))
    return result


def build_inference_model(model_config: Any, state_dict: dict[str, Any], source: str | os.PathLike):
    """The VLOSS network in eval mode with ``state_dict`` loaded strictly (shape-checked).

    The weight-file paths of the config (pretrained backbone / text tower) are dropped: the
    state dict holds every tensor, and those files may not exist where the model is used.

    Args:
        model_config: a :class:`vloss.config.ModelConfig`.
        state_dict: tensors by parameter name.
        source: the file they came from (named in errors).

    Raises:
        WeightsError: tensors that do not fit the configured network (naming file and parameter).
    """
    from dataclasses import replace

    from vloss.model import VLOSS
    from vloss.model.weights import load_checked

    cfg = replace(model_config, backbone=replace(model_config.backbone, weights=None),
                  text=replace(model_config.text, weights=None))
    model = VLOSS(cfg)
    load_checked(model, state_dict, str(source), "VLOSS model")
    model.text.clear_cache()
    return model.eval()


def _with_preset_run_settings(job):
    """An older weights file stores only the model+loss config (no input size): take the run
    settings from the preset whose network is the stored one (``tiny`` -> 128 px), else keep
    the defaults."""
    from vloss.config import job_preset
    from vloss.config_io import to_dict

    model = to_dict(job.model)
    for name in ("tiny", "paper", "baseline"):
        ref = job_preset(name)
        if to_dict(ref.model) == model:
            job.input = ref.input
            break
    return job
