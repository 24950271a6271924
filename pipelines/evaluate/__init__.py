"""Stage 3: open-vocabulary evaluation of a checkpoint as a Ray job (ADE20K panoptic PQ, LVIS mask AP, ...).

``tasks`` (the table of evaluation tasks), ``data`` (ground truth and open vocabulary),
``decode`` (torch-free decode tasks), ``model`` (the checkpoint for evaluation), ``predictor``
(the actor), ``config`` and ``job`` (the driver). Importing this package imports nothing heavy.
"""
