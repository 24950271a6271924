"""The resolved configuration of a training run: model + loss (``VLOSSConfig``) + run settings.

``TrainJobConfig`` extends ``vloss.config.VLOSSConfig`` with ``train``, ``optim`` and ``input``
sections, so ``--set`` overrides address any field by its dotted path
(``model.decoder.num_layers=6``, ``train.schedule=mix``, ``optim.base_lr=1e-4``) with the same
type checks, and the whole thing round-trips through JSON into every checkpoint and report.
Presets are functions: ``job_preset("paper")`` and ``job_preset("tiny")``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.train_data import InputConfig
from vloss.config import VLOSSConfig, apply_overrides, from_dict, preset, to_dict
from vloss.lr_schedule import OptimConfig

DEFAULT_TEMPLATES = ("a photo of a {}.",)


@dataclass
class TrainConfig:
    """Run settings (paper Sec. 4.2 defaults).

    Args:
        schedule: "stt" (paper), "mix", "pretrain" or "panoptic" (Mask2Former+CLIP baseline).
        epochs: epochs of the whole run (paper: 12).
        caption_ratio: caption steps per dense step (0 disables the image-text task).
        pretrain_epochs: detection epochs of the "pretrain" schedule (None: epochs // 2).
        dense_batch_size: segmentation images per worker per step (paper: 32 in total).
        caption_batch_size: image-text pairs per worker per step (paper: 512 in total).
        panoptic_images, detection_images, caption_images: rows read per pass of each
            dataset (0 = all); for trial runs on a subset.
        amp: "auto" (bf16 autocast on GPU, off on CPU), "bf16", "fp16" (GPU, with a grad
            scaler) or "off".
        grad_clip: max global gradient norm (Mask2Former: 0.01 full-model clipping; 0 = off).
        checkpoint_every: steps between checkpoints (sub-epoch ends always checkpoint).
        log_every: steps between metric lines.
        max_steps: stop after this many steps of this run (trials); 0 = the whole schedule.
        keep_checkpoints: checkpoints kept by Ray Train.
        templates: prompt templates for class names (an ensemble when several).
        fail_at_step: test hook: worker rank 1 exits at this global step once (-1 = never).
    """

    schedule: str = "stt"
    epochs: int = 12
    caption_ratio: float = 0.5
    pretrain_epochs: int | None = None
    dense_batch_size: int = 4
    caption_batch_size: int = 64
    panoptic_images: int = 0
    detection_images: int = 0
    caption_images: int = 0
    amp: str = "auto"
    grad_clip: float = 0.01
    checkpoint_every: int = 500
    log_every: int = 20
    max_steps: int = 0
    keep_checkpoints: int = 3
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    fail_at_step: int = -1

    def batch_size(self, task: str) -> int:
        """Per-worker batch of ``task``: dense tasks share one size, captions have their own."""
        return self.caption_batch_size if task == "captions" else self.dense_batch_size

    def images_cap(self, task: str) -> int:
        """Rows read per pass of ``task``'s dataset (0 = all)."""
        return {"panoptic": self.panoptic_images, "detection": self.detection_images,
                "captions": self.caption_images}[task]


@dataclass
class TrainJobConfig(VLOSSConfig):
    """Model, loss, optimiser, input and run settings of one training job."""

    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    input: InputConfig = field(default_factory=InputConfig)


def job_preset(name: str) -> TrainJobConfig:
    """``paper``/``baseline`` (Sec. 4.2 settings) or ``tiny`` (CPU demo and tests)."""
    base = preset(name)
    cfg = TrainJobConfig(model=base.model, loss=base.loss, seed=base.seed)
    if name == "baseline":
        cfg.train.schedule = "panoptic"
    if name == "tiny":
        cfg.input = InputConfig(dense_size=128, caption_size=64, lsj_min_scale=0.5, lsj_max_scale=1.5)
        cfg.train.epochs = 4
        cfg.train.dense_batch_size = 4
        cfg.train.caption_batch_size = 8
        cfg.train.checkpoint_every = 50
        cfg.train.log_every = 5
        cfg.train.grad_clip = 1.0
        cfg.optim.base_lr = 1e-3
        cfg.optim.text_lr = 1e-4
    return cfg


def resolve(name: str, overrides: list[str] | None = None) -> TrainJobConfig:
    """A preset with ``key=value`` overrides applied (type-checked)."""
    cfg = job_preset(name)
    return apply_overrides(cfg, list(overrides or []))


def job_to_dict(cfg: TrainJobConfig) -> dict:
    return to_dict(cfg)


def job_from_dict(data: dict) -> TrainJobConfig:
    return from_dict(data, TrainJobConfig)
