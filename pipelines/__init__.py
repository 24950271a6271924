"""Everything that imports Ray: the three stages of the system and what they share.

``common/`` holds neutral modules (storage over local paths and object-store URIs, shard naming,
torch-free image decoding, Ray start-up, resource defaults, the
pseudo-mask record format); ``pseudo_masks/``, ``train/`` and ``evaluate/`` are the stages of the
paper's pipeline, ``predict/`` the batch use of a trained model.
Stages import ``common`` and the ``vloss`` library, never each other. See docs/DESIGN.md.
"""
