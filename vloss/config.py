"""The recipe: typed dataclasses of every component, and the presets.

Every component has its own dataclass; :class:`VLOSSConfig` (network + loss) and
:class:`TrainJobConfig` (+ optimiser, input and schedule settings of a training run)
nest them. Presets are plain functions (:func:`paper`, :func:`baseline`, :func:`tiny` for the
network; :func:`job_preset` for a whole run) that return a fully resolved config.

The engine that applies ``--set key=value`` overrides and round-trips configs through JSON is
:mod:`vloss.config_io`; adding a section only needs a new dataclass and one field with
``field(default_factory=...)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from vloss.checks import at_least, divides, fraction, non_negative, positive
from vloss.config_io import apply_overrides
from vloss.data.class_names import NameCleaning
from vloss.training.schedule_modes import schedule_mode
from vloss.training.tasks import TASKS, training_task

ENCODER_KINDS = ("fpn_style", "fpn", "deform")


@dataclass
class BackboneConfig:
    """Image feature extractor f_I (a timm model used with ``features_only``).

    Args:
        name: timm model name, e.g. ``swin_tiny_patch4_window7_224`` or ``resnet50``.
        out_indices: which feature stages to return; the default, the last four, gives
            strides 4/8/16/32 for Swin, ResNets and ConvNeXts.
        embed_dim: Swin only: override the patch-embedding width (builds a smaller Swin).
        depths: Swin only: override the number of blocks per stage.
        num_heads: Swin only: override the attention heads per stage.
        drop_path_rate: stochastic depth rate (Mask2Former's Swin-T uses 0.3).
        weights: optional ImageNet weights, loaded at build: a local file (a timm checkpoint,
            ``.pth``/``.bin``/``.safetensors``) or a timm name found in the Hugging Face cache
            (``hf-hub:timm/swin_tiny_patch4_window7_224.ms_in1k`` or the tag
            ``swin_tiny_patch4_window7_224.ms_in1k``; :mod:`vloss.model.hub`).
        allow_download: let a ``weights`` name missing from the cache be downloaded (off: refused
            with the command that fills the cache).
        grad_checkpointing: recompute each stage's activations in the backward pass instead of
            keeping them (timm's ``set_grad_checkpointing``): less memory, about a third more
            backbone compute; gradients are unchanged.
    """

    name: str = "swin_tiny_patch4_window7_224"
    out_indices: tuple[int, ...] = (-4, -3, -2, -1)
    embed_dim: Optional[int] = None
    depths: Optional[tuple[int, ...]] = None
    num_heads: Optional[tuple[int, ...]] = None
    drop_path_rate: float = 0.3
    weights: Optional[str] = None
    allow_download: bool = False
    grad_checkpointing: bool = False


@dataclass
class EncoderConfig:
    """Multi-scale pixel encoder f_E (paper Sec. 3.3, Table 5).

    Args:
        kind: ``fpn_style`` (VLOSS: transformer on f0 + FPN), ``fpn`` (convs only) or
            ``deform`` (Mask2Former's multi-scale deformable attention encoder).
        hidden_dim: channel width of the refined maps f'0..f'2 (and of the FPN convs).
        mask_dim: channel width of the mask features f'3 (stride 4).
        num_layers: transformer layers (fpn_style: on f0; deform: deformable layers).
        num_heads: attention heads of those layers.
        ffn_dim: feed-forward width of those layers.
        transformer_dim: fpn_style only: width of the transformer over f0; ``None`` keeps the
            backbone's own width (768 for Swin-T), as in the paper's parameter count.
        num_points: deform only: sampling points per head and level.
        dropout: dropout inside the transformer layers.
    """

    kind: str = "fpn_style"
    hidden_dim: int = 256
    mask_dim: int = 256
    num_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 3072
    transformer_dim: Optional[int] = None
    num_points: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder.kind must be one of {ENCODER_KINDS}, got {self.kind!r}")
        at_least("model.encoder", 1, hidden_dim=self.hidden_dim, mask_dim=self.mask_dim, num_heads=self.num_heads,
                 ffn_dim=self.ffn_dim, num_points=self.num_points)
        at_least("model.encoder", 0, num_layers=self.num_layers)
        fraction("model.encoder", closed_high=False, dropout=self.dropout)


@dataclass
class DecoderConfig:
    """Masked-attention transformer decoder f_D (Mask2Former, plus the global image query).

    Args:
        hidden_dim: query width D.
        num_queries: N learnable object queries.
        num_layers: decoder layers (round-robin over f'0..f'2).
        num_heads: attention heads.
        ffn_dim: feed-forward width.
        global_query: add the global image query (Eq. 2); ``False`` gives the baseline.
        mask_threshold: a pixel is attended when sigmoid(mask logit) >= this.
        dropout: dropout inside attention and feed-forward layers.
        grad_checkpointing: recompute each decoder layer (cross-attention, self-attention, FFN) in
            the backward pass instead of keeping its activations (``torch.utils.checkpoint``,
            non-reentrant, RNG state preserved): less memory, gradients unchanged.
    """

    hidden_dim: int = 256
    num_queries: int = 100
    num_layers: int = 9
    num_heads: int = 8
    ffn_dim: int = 2048
    global_query: bool = True
    mask_threshold: float = 0.5
    dropout: float = 0.0
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        at_least("model.decoder", 1, hidden_dim=self.hidden_dim, num_queries=self.num_queries,
                 num_heads=self.num_heads, ffn_dim=self.ffn_dim)
        at_least("model.decoder", 0, num_layers=self.num_layers)  # 0: queries straight from f0
        fraction("model.decoder", closed_high=False, dropout=self.dropout)
        if not math.isfinite(self.mask_threshold):  # outside [0, 1] is allowed: masks nothing / everything
            raise ValueError(f"model.decoder.mask_threshold must be finite, got {self.mask_threshold}")


@dataclass
class TextConfig:
    """CLIP text tower f_T (open_clip ``TextTransformer``).

    Args:
        context_length: tokens per text (paper: cut from 77 to 48).
        vocab_size: BPE vocabulary size (open_clip's bundled tokenizer: 49408).
        width: transformer width.
        layers: transformer layers.
        heads: attention heads.
        embed_dim: output (joint embedding) width Dt.
        quick_gelu: use QuickGELU as OpenAI's CLIP weights do.
        templates: prompt templates for class embeddings; ``{}`` is the class name. The one template
            setting of a run: training, evaluation and prediction all use it (an ensemble when several).
        names: how class names are cleaned before they are prompted (the same rule everywhere).
        weights: optional CLIP (or text-only) weights, loaded at build: a local state-dict file
            (``.pt``/``.bin``/``.safetensors``) or an open_clip name found in the Hugging Face cache
            (``ViT-B-32/openai``, ``hf-hub:ORG/REPO``; :mod:`vloss.model.hub`).
        allow_download: let a ``weights`` name missing from the cache be downloaded.
        trainable: whether the text tower receives gradients.
    """

    context_length: int = 48
    vocab_size: int = 49408
    width: int = 512
    layers: int = 12
    heads: int = 8
    embed_dim: int = 512
    quick_gelu: bool = True
    templates: tuple[str, ...] = ("a photo of a {}.",)
    names: NameCleaning = field(default_factory=NameCleaning)
    weights: Optional[str] = None
    allow_download: bool = False
    trainable: bool = True


@dataclass
class ModelConfig:
    """The whole network.

    Args:
        backbone: image feature extractor settings.
        encoder: multi-scale encoder settings.
        decoder: decoder settings.
        text: text encoder settings.
        logit_scale_init: initial value of the (learned, CLIP-style) logit scales (1/0.07).
        logit_scale_max: clamp of the logit scales (CLIP: 100).
    """

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    text: TextConfig = field(default_factory=TextConfig)
    logit_scale_init: float = 1.0 / 0.07
    logit_scale_max: float = 100.0


@dataclass
class LossConfig:
    """Weights and sampling settings of the VLOSS objective (Eq. 6, Sec. 3.5 and 4.2), read by :mod:`vloss.losses`.

    Args:
        cls_weight: lambda_cls for the (C+1)-way cross-entropy (paper: 2.0).
        bce_weight: lambda_bce for the sigmoid BCE mask loss (paper: 5.0).
        dice_weight: lambda_dice for the dice mask loss (paper: 5.0).
        con_weight: lambda_con for the image-text contrastive loss (paper: 1.0).
        no_object_weight: cross-entropy weight of the "no-object" class (Mask2Former: 0.1).
        num_points: points sampled per mask for matching and for the mask losses.
        oversample_ratio: importance sampling oversampling ratio (Mask2Former: 3.0).
        importance_sample_ratio: share of points taken from the most uncertain ones (0.75).
        positive_only_detection: use positive-only classification loss on detection batches.
        deep_supervision: supervise every decoder layer, not only the last.
        contrastive: "clip" (global InfoNCE, Eq. 5) or "filip" (token-wise, Table 6 ablation).
        gather_contrastive: gather embeddings across ranks for more negatives.
        gather_with_grad: make that gather differentiable (gradients of the global loss reach
            every rank's embeddings); otherwise only the local shard carries gradient.
    """

    cls_weight: float = 2.0
    bce_weight: float = 5.0
    dice_weight: float = 5.0
    con_weight: float = 1.0
    no_object_weight: float = 0.1
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    positive_only_detection: bool = True
    deep_supervision: bool = True
    contrastive: str = "clip"
    gather_contrastive: bool = True
    gather_with_grad: bool = True

    def __post_init__(self) -> None:
        if self.contrastive not in ("clip", "filip"):
            raise ValueError(f"LossConfig.contrastive must be 'clip' or 'filip', got {self.contrastive!r}")
        if self.num_points <= 0:
            raise ValueError(f"LossConfig.num_points must be positive, got {self.num_points}")
        if self.oversample_ratio < 1.0:
            raise ValueError(f"LossConfig.oversample_ratio must be >= 1, got {self.oversample_ratio}")
        if not 0.0 <= self.importance_sample_ratio <= 1.0:
            raise ValueError("LossConfig.importance_sample_ratio must be in [0, 1], "
                             f"got {self.importance_sample_ratio}")
        if self.no_object_weight < 0:
            raise ValueError(f"LossConfig.no_object_weight must be >= 0, got {self.no_object_weight}")


@dataclass
class VLOSSConfig:
    """Everything a run needs; saved (resolved) in every checkpoint.

    Args:
        model: network settings.
        loss: loss weights and sampling (read by ``vloss.losses``).
        seed: global random seed.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    seed: int = 0


# --------------------------------------------------------------------------- presets


def paper() -> VLOSSConfig:
    """VLOSS as in Sec. 4.2: Swin-T, FPN-style encoder, 9 layers, 100 + 1 queries, CLIP ViT-B text."""
    return VLOSSConfig()


def baseline() -> VLOSSConfig:
    """Mask2Former + CLIP text encoder: deformable encoder, no global query (Table 3, row 1)."""
    cfg = VLOSSConfig()
    cfg.model.encoder = EncoderConfig(kind="deform", num_layers=6, num_heads=8, ffn_dim=1024)
    cfg.model.decoder.global_query = False
    return cfg


def tiny() -> VLOSSConfig:
    """A few-million-parameter model for tests and demos on CPU (no weights needed)."""
    cfg = VLOSSConfig()
    cfg.model.backbone = BackboneConfig(
        name="swin_tiny_patch4_window7_224", embed_dim=32, depths=(1, 1, 1, 1),
        num_heads=(1, 2, 4, 8), drop_path_rate=0.0,
    )
    cfg.model.encoder = EncoderConfig(
        kind="fpn_style", hidden_dim=64, mask_dim=64, num_layers=1, num_heads=4,
        ffn_dim=256, transformer_dim=64,
    )
    cfg.model.decoder = DecoderConfig(hidden_dim=64, num_queries=20, num_layers=3, num_heads=4, ffn_dim=256)
    cfg.model.text = TextConfig(width=64, layers=2, heads=2, embed_dim=64)
    cfg.loss.num_points = 1024
    return cfg


PRESETS: dict[str, Callable[[], VLOSSConfig]] = {"paper": paper, "baseline": baseline, "tiny": tiny}


def preset(name: str) -> VLOSSConfig:
    """Return the preset config called ``name`` (one of :data:`PRESETS`)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


# --------------------------------------------------------------------------- a training run


@dataclass
class InputConfig:
    """Input settings of one run (paper Sec. 4.2: 768 dense, 224 image-text).

    Args:
        dense_size: side of dense training crops (also the default evaluation size).
        caption_size: side of image-text crops.
        lsj_min_scale, lsj_max_scale: large-scale jitter range.
        seed: mixed into every sample's random generator.
    """

    dense_size: int = 768
    caption_size: int = 224
    lsj_min_scale: float = 0.1
    lsj_max_scale: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        at_least("input", 32, dense_size=self.dense_size)
        at_least("input", 8, caption_size=self.caption_size)
        positive("input", lsj_min_scale=self.lsj_min_scale, lsj_max_scale=self.lsj_max_scale)
        at_least("input", 0, seed=self.seed)


@dataclass
class TrainConfig:
    """Run settings (paper Sec. 4.2 defaults).

    Args:
        schedule: "stt" (paper), "mix", "pretrain" or "panoptic" (Mask2Former+CLIP baseline).
        epochs: epochs of the whole run (paper: 12).
        caption_ratio: caption steps per dense step (0 disables the image-text task). The paper
            gives no ratio; 0.5 (one image-text batch per two dense batches) is our choice.
        pretrain_epochs: detection epochs of the "pretrain" schedule (None: epochs // 2).
        dense_batch_size: segmentation images per step over all workers (paper: 32), on any number
            of workers: W workers take dense_batch_size // W each and the first dense_batch_size % W
            one more (the losses are normalised over the whole step's batch, so the step is the
            global batch's step however it is split).
        micro_batch: segmentation images per forward and backward on a worker: a worker's share is cut
            into micro-batches of this size and their gradients accumulated before the optimizer step,
            equal to the step on the whole share (:mod:`vloss.training.accumulate`); 0: no cut.
            Caption batches are never cut (fewer contrastive negatives would change the loss).
        caption_batch_size: image-text pairs per step over all workers (paper: 512); every worker
            takes caption_batch_size // W (the contrastive loss gathers equal shares), so where W does
            not divide it the step holds W x that many pairs, which the plan shows.
        panoptic_images, detection_images, caption_images: rows read per pass of each
            dataset (0 = all); for trial runs on a subset.
        amp: "auto" (bf16 autocast on GPU, off on CPU), "bf16", "fp16" (GPU, with a grad
            scaler) or "off".
        grad_clip: max global gradient norm (Mask2Former: 0.01 full-model clipping; 0 = off).
        checkpoint_every: steps between checkpoints.
        checkpoint_sub_epochs: also checkpoint at every sub-epoch end (warmup / cooldown); a
            paper epoch is hours, so this is on; the demo's epochs last seconds and turn it off
            (a checkpoint is still written at every validation and at the end).
        log_every: steps between metric lines.
        max_steps: stop once the run has trained this many steps in all (trials; a re-run of a
            finished trial trains nothing, a larger value continues it); 0 = the whole schedule.
        keep_checkpoints: the latest checkpoints Ray Train keeps (the best one is kept besides).
        eval_every: validate (PQ on the panoptic val split) every this many epochs and at the
            end; 0 turns validation off. Sec. 4.1 selects the best checkpoint on COCO val.
        val_images: images of the val split scored per validation (0 = all).
        val_batch_size: images per forward pass during validation (padded to the largest).
        require_pretrained: refuse to start without ``model.backbone.weights`` and
            ``model.text.weights`` (the paper's ImageNet Swin-T and CLIP text tower); set by the
            ``paper`` and ``baseline`` presets, cleared by ``--from-scratch``.
        reset_optimizer_between_stages: a multi-stage schedule ("pretrain") starts the
            fine-tune with fresh AdamW moments, as a separate fine-tuning run would.
        record_batches: write the image ids every rank trained on at every step into the
            metric rows (``batches``), for auditing a run's data order and its resumes.
    """

    schedule: str = "stt"
    epochs: int = 12
    caption_ratio: float = 0.5
    pretrain_epochs: Optional[int] = None
    dense_batch_size: int = 32
    caption_batch_size: int = 512
    micro_batch: int = 0
    panoptic_images: int = 0
    detection_images: int = 0
    caption_images: int = 0
    amp: str = "auto"
    grad_clip: float = 0.01
    checkpoint_every: int = 500
    checkpoint_sub_epochs: bool = True
    log_every: int = 20
    max_steps: int = 0
    keep_checkpoints: int = 3
    eval_every: int = 1
    val_images: int = 0
    val_batch_size: int = 2
    require_pretrained: bool = False
    reset_optimizer_between_stages: bool = True
    record_batches: bool = False

    def __post_init__(self) -> None:
        at_least("train", 1, epochs=self.epochs, dense_batch_size=self.dense_batch_size,
                 caption_batch_size=self.caption_batch_size, checkpoint_every=self.checkpoint_every,
                 log_every=self.log_every, keep_checkpoints=self.keep_checkpoints,
                 val_batch_size=self.val_batch_size)
        at_least("train", 0, panoptic_images=self.panoptic_images, detection_images=self.detection_images,
                 caption_images=self.caption_images, max_steps=self.max_steps, eval_every=self.eval_every,
                 val_images=self.val_images, micro_batch=self.micro_batch)
        non_negative("train", caption_ratio=self.caption_ratio, grad_clip=self.grad_clip)

    def tasks_used(self) -> tuple[str, ...]:
        """The training tasks this run draws from (panoptic always; detection unless the schedule is
        panoptic-only; captions when caption_ratio > 0)."""
        dense = schedule_mode(self.schedule).dense_tasks()
        return tuple(t for t in TASKS if t in dense or (not training_task(t).dense and self.caption_ratio > 0))

    def batch_size(self, task: str) -> int:
        """Global batch of ``task`` (all workers): dense tasks share one size, captions have their own."""
        return getattr(self, training_task(task).batch_key)

    def rank_batch_sizes(self, task: str, workers: int) -> list[int]:
        """Per-worker batches of ``task`` on ``workers`` workers, rank by rank.

        Dense tasks split the global batch as evenly as possible (32 on 3 workers: 11, 11, 10);
        captions give every worker ``caption_batch_size // workers`` (equal shares for the
        contrastive loss's gather).

        Raises:
            ValueError: fewer images in the global batch than workers (names both numbers).
        """
        total = self.batch_size(task)
        key = training_task(task).batch_key
        if workers < 1 or total < workers:
            raise ValueError(f"train.{key}={total} (the global {task} batch) is smaller than the {workers} "
                             f"workers; use fewer workers or set train.{key}")
        q, r = divmod(total, workers)
        if not training_task(task).dense:
            return [q] * workers
        return [q + (i < r) for i in range(workers)]

    def worker_batch_size(self, task: str, workers: int, rank: int = 0) -> int:
        """Per-worker batch of ``task`` on rank ``rank`` of ``workers`` (:meth:`rank_batch_sizes`)."""
        return self.rank_batch_sizes(task, workers)[rank]

    def step_batch_size(self, task: str, workers: int) -> int:
        """Images of ``task`` one step trains on over all workers (the global batch, or for
        captions on workers that do not divide it, the largest multiple of the workers below it)."""
        return sum(self.rank_batch_sizes(task, workers))

    def accumulation_steps(self, task: str, workers: int, rank: int = 0) -> int:
        """Forward-backward passes of one step on rank ``rank`` (micro-batches; 1 for captions)."""
        b = self.worker_batch_size(task, workers, rank)
        if not training_task(task).dense or self.micro_batch <= 0:
            return 1
        return -(-b // self.micro_batch)

    def images_cap(self, task: str) -> int:
        """Rows of ``task`` that take part in training: the first this many in shard order (0 = all)."""
        return {"panoptic": self.panoptic_images, "detection": self.detection_images,
                "captions": self.caption_images}[task]


@dataclass
class OptimConfig:
    """AdamW and learning-rate schedule settings (paper Sec. 4.2), read by :mod:`vloss.training.optim`.

    Args:
        base_lr: learning rate of everything but the text encoder and the backbone (paper: 2e-4).
        text_lr: learning rate of the text encoder (paper: 2e-5).
        backbone_lr_mult: the image backbone trains at ``base_lr * backbone_lr_mult``. The paper is
            silent; its code base (MMDetection's Mask2Former configs, ``custom_keys={'backbone':
            dict(lr_mult=0.1)}``) and Mask2Former itself (``SOLVER.BACKBONE_MULTIPLIER: 0.1``) use
            0.1 for ImageNet-initialised backbones, so 0.1 is the default; 1.0 turns it off.
        backbone_prefix: parameter-name prefix of the image backbone in the model.
        weight_decay: AdamW decoupled weight decay (not stated in the paper; Mask2Former: 0.05).
        betas: AdamW betas.
        text_prefix: parameter-name prefix of the text encoder in the model.
        gamma: multiplicative decay at each milestone (paper: 0.1).
        milestone_epochs: decay points in units of `reference_epochs` (paper: 8 and 11).
        reference_epochs: epochs the milestones refer to (paper: 12); a run of any length is
            mapped onto them by :func:`vloss.training.optim.milestones_for`.
        warmup_iters: steps of linear warmup at the start of every training stage (0: none).
        warmup_factor: lr multiplier at step 0 of the warmup (mmdet default 0.001).
    """

    base_lr: float = 2e-4
    text_lr: float = 2e-5
    backbone_lr_mult: float = 0.1
    backbone_prefix: str = "backbone."
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    text_prefix: str = "text."
    gamma: float = 0.1
    milestone_epochs: tuple[int, ...] = (8, 11)
    reference_epochs: int = 12
    warmup_iters: int = 0
    warmup_factor: float = 0.001

    def __post_init__(self) -> None:
        positive("optim", base_lr=self.base_lr, text_lr=self.text_lr, gamma=self.gamma,
                 warmup_factor=self.warmup_factor)
        non_negative("optim", backbone_lr_mult=self.backbone_lr_mult, weight_decay=self.weight_decay)
        fraction("optim", closed_high=False, beta1=self.betas[0], beta2=self.betas[1])
        at_least("optim", 1, reference_epochs=self.reference_epochs)
        at_least("optim", 0, warmup_iters=self.warmup_iters)


@dataclass
class TrainJobConfig(VLOSSConfig):
    """Network, loss, optimiser, input and schedule settings of one training run."""

    def check(self) -> None:
        """Raise ValueError for combinations that cannot train (checked again after overrides)."""
        m = self.model
        divides("model.decoder", "num_heads", m.decoder.num_heads, "hidden_dim", m.decoder.hidden_dim)
        divides("model.text", "heads", m.text.heads, "width", m.text.width)
        if m.encoder.kind == "deform":
            divides("model.encoder", "num_heads", m.encoder.num_heads, "hidden_dim", m.encoder.hidden_dim)
        elif m.encoder.kind == "fpn_style" and m.encoder.transformer_dim:
            divides("model.encoder", "num_heads", m.encoder.num_heads, "transformer_dim", m.encoder.transformer_dim)
        if self.input.lsj_min_scale > self.input.lsj_max_scale:
            raise ValueError(f"input.lsj_min_scale={self.input.lsj_min_scale} is above "
                             f"input.lsj_max_scale={self.input.lsj_max_scale}")
        if self.train.caption_ratio > 0 and not self.model.decoder.global_query:
            raise ValueError("train.caption_ratio > 0 trains L_con on the global image query, but "
                             "model.decoder.global_query is false; set train.caption_ratio=0 or "
                             "model.decoder.global_query=true")

    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    input: InputConfig = field(default_factory=InputConfig)


def job_preset(name: str) -> TrainJobConfig:
    """A whole run: ``paper`` / ``baseline`` (Sec. 4.2 settings) or ``tiny`` (CPU demo and tests)."""
    base = preset(name)
    cfg = TrainJobConfig(model=base.model, loss=base.loss, seed=base.seed)
    if name in ("paper", "baseline"):
        cfg.train.require_pretrained = True
    if name == "baseline":
        # Mask2Former+CLIP (Table 1 row 2, Table 3 row 1): COCO panoptic only, no image-text task
        # (it has no global image query for L_con)
        cfg.train.schedule = "panoptic"
        cfg.train.caption_ratio = 0.0
    if name == "tiny":
        cfg.input = InputConfig(dense_size=128, caption_size=64, lsj_min_scale=0.5, lsj_max_scale=1.5)
        cfg.train.epochs = 4
        cfg.train.dense_batch_size = 8
        cfg.train.caption_batch_size = 16
        cfg.train.checkpoint_every = 50
        cfg.train.log_every = 5
        cfg.train.grad_clip = 1.0
        cfg.optim.base_lr = 1e-3
        cfg.optim.text_lr = 1e-4
        cfg.optim.backbone_lr_mult = 1.0  # trained from scratch: no ImageNet features to protect
    return cfg


def resolve(name: str, overrides: list[str] | None = None) -> TrainJobConfig:
    """The run preset ``name`` with ``key=value`` overrides applied (type-checked, then checked as a whole)."""
    cfg = apply_overrides(job_preset(name), list(overrides or []))
    cfg.check()
    return cfg
