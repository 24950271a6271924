"""A trained network for evaluation: the checkpoint read on the driver, shape-checked, and rebuilt in actors.

The checkpoint format itself is :mod:`vloss.checkpoint`; this module adds what
evaluation needs on top: the network built in eval mode with its tensors loaded strictly (so a
checkpoint that does not fit fails on the driver with the file and parameter named), its
parameter count for the report, and the run's training input size (the default evaluation size).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vloss.checkpoint import STATE_FILE, build_inference_model, load_model_checkpoint
from vloss.config import ModelConfig
from vloss.config_io import to_dict
from vloss.model import VLOSS


@dataclass
class LoadedCheckpoint:
    """A checkpoint as the evaluation job uses it.

    Args:
        path: the checkpoint directory or weights file.
        kind: ``"training checkpoint"`` or ``"weights file"``.
        model_config: the network settings.
        state_dict: the network's tensors (CPU).
        config: the resolved job configuration to record in the report.
        default_size: the training input size of the run (shorter side at evaluation).
        templates: the prompt templates of the run (``model.text.templates``).
        params: parameter count of the network.
    """

    path: Path
    kind: str
    model_config: ModelConfig
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    default_size: int
    templates: tuple[str, ...]
    params: int


def load_eval_model(checkpoint: str | os.PathLike, config: str | None = None,
                    overrides: list[str] | None = None) -> tuple[VLOSS, LoadedCheckpoint]:
    """Load a checkpoint for evaluation.

    Args:
        checkpoint: a training checkpoint directory (``state.pt`` + ``meta.json``) or a
            weights file saved by ``save_model_weights``.
        config: for a weights file: preset ``tiny`` | ``paper`` | ``baseline`` (default: the
            config stored in the file). Ignored for a checkpoint directory, whose
            ``meta.json`` holds the resolved config.
        overrides: ``key=value`` overrides of the job config (e.g. ``model.text.templates=...``).

    Returns:
        (the network in eval mode, a :class:`LoadedCheckpoint`).

    Raises:
        FileNotFoundError: no such checkpoint.
        WeightsError: tensors that do not fit the configured network (names file and parameter).
        ValueError: a weights file without stored config and no ``config`` given.
    """
    ckpt = load_model_checkpoint(checkpoint, config, overrides)
    source = ckpt.path / STATE_FILE if ckpt.path.is_dir() else ckpt.path
    model = build_inference_model(ckpt.job.model, ckpt.state_dict, source)
    info = LoadedCheckpoint(ckpt.path, ckpt.kind, ckpt.job.model, ckpt.state_dict, to_dict(ckpt.job),
                            ckpt.job.input.dense_size, tuple(ckpt.job.model.text.templates),
                            sum(p.numel() for p in model.parameters()))
    return model, info
