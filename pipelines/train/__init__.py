"""Stage 2: training shards -> VLOSS trained with Ray Train over a step schedule (STT, mix, pretrain, panoptic).

``config`` (the cluster section), ``sources`` and ``shards`` (training shards in one schema),
``transforms`` / ``collate`` / ``datasets`` (the input pipeline in Ray Data), ``schedule`` (which
task each step draws from), ``streams`` / ``metrics`` / ``trainer`` (the Trainer and its
components), ``worker`` (the Ray Train entry point), ``job`` (the driver). Importing this package
imports nothing heavy.
"""
