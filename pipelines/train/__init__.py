"""Stage 2: training shards -> VLOSS trained with Ray Train over a step schedule (STT, mix, pretrain, panoptic).

``config`` (the cluster section), ``sources`` and ``shards`` (training shards in one schema),
``transforms`` / ``collate`` / ``datasets`` (the input pipeline in Ray Data), ``schedule`` (which
task each step draws from), ``streams`` / ``metrics`` / ``trainer`` (the Trainer and its
components), ``worker`` (the Ray Train entry point), ``job`` (the driver). ``pretrain`` is the
other Ray Train job of this stage: the image and text towers pretrained CLIP-style on a caption
corpus (``jobs/pretrain.py``), with the same cluster section, storage, progress line and failure
handling. Importing this package imports nothing heavy.
"""
