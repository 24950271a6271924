"""Settings of the tower pretraining (``jobs/pretrain.py``), reachable with ``--set KEY=VALUE``."""

from __future__ import annotations

from dataclasses import dataclass

from vloss.checks import at_least, non_negative, positive


@dataclass
class PretrainConfig:
    """CLIP-style pretraining of the image and text towers of a network preset.

    The towers get exactly the sizes of ``preset`` (``vloss.config.PRESETS``), so the files this
    writes load into that preset through ``model.backbone.weights`` / ``model.text.weights``.
    Choices the paper does not make (it takes its towers from ImageNet and CLIP) follow CLIP
    (Radford et al. 2021): symmetric InfoNCE over the global batch, learned temperature starting
    at 1/0.07 and capped at 100, AdamW with warm-up then cosine decay, random resized crops.

    The label objective stands in for the ImageNet classification pretraining of the paper's
    image tower, with the labels read from words: each image's class labels are the class
    names its captions mention (``--classes``; a synthetic world's whole vocabulary), and the
    image is classified against the text tower's embeddings of those names in the prompt the
    VLOSS run uses (softmax over the classes, the target spread evenly over the named ones; as
    UniCL, Yang et al. 2022). Measured on the demo world, contrastive loss alone let the text
    tower match captions by their stuff words and left every class name at nearly one
    embedding (mean cosine 0.85, top-5 zero-shot 13% against 7% chance).

    Args:
        preset: network preset whose towers are pretrained (``tiny`` on CPU).
        image_size: square training resolution.
        batch_size: global batch (image-caption pairs per step over all workers); must divide
            by the workers.
        epochs: passes over the corpus.
        lr: peak learning rate.
        weight_decay: AdamW weight decay (CLIP: 0.2; here 0.1, measured on the demo world).
        warmup_steps: linear warm-up steps before the cosine decay.
        min_crop: smallest area fraction of a random resized crop (1 = no crop).
        flip: random horizontal flips.
        seed: seed of the run: initialisation, corpus order, crops, flips and caption picks.
        checkpoint_every: steps between checkpoints (the last step always writes one).
        log_every: steps between metric rows.
        keep_checkpoints: checkpoints Ray Train keeps.
        max_steps: stop after this many steps in all (0: the whole schedule); a run-length key.
        label_weight: weight of the label objective beside the contrastive loss (0: CLIP alone;
            without class names it is off).
        label_template: prompt of a class name in the label objective (VLOSS's default template).
    """

    preset: str = "tiny"
    image_size: int = 96
    batch_size: int = 128
    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_steps: int = 30
    min_crop: float = 0.6
    flip: bool = True
    seed: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    keep_checkpoints: int = 2
    max_steps: int = 0
    label_weight: float = 1.0
    label_template: str = "a photo of a {}."

    def __post_init__(self) -> None:
        at_least("pretrain", 1, image_size=self.image_size, batch_size=self.batch_size, epochs=self.epochs,
                 checkpoint_every=self.checkpoint_every, log_every=self.log_every,
                 keep_checkpoints=self.keep_checkpoints)
        at_least("pretrain", 0, warmup_steps=self.warmup_steps, max_steps=self.max_steps)
        positive("pretrain", lr=self.lr)
        non_negative("pretrain", weight_decay=self.weight_decay, label_weight=self.label_weight)
        if "{}" not in self.label_template:
            raise ValueError(f"pretrain.label_template={self.label_template!r} has no {{}} for the class name")
        if not 0.05 <= self.min_crop <= 1.0:
            raise ValueError(f"pretrain.min_crop must lie in [0.05, 1], got {self.min_crop}")
        if self.image_size % 32:
            raise ValueError(f"pretrain.image_size={self.image_size} must be a multiple of 32 (the backbone's stride)")


# keys that change how long a run is, never what it computes (not part of the run's identity)
RUN_LENGTH_KEYS = ("max_steps", "log_every", "keep_checkpoints")
