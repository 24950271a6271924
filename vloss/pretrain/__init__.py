"""Tower pretraining in miniature: the CLIP-style start the paper takes from elsewhere (Sec. 4.1).

:mod:`vloss.pretrain.towers` holds the two-tower model and writes its towers in the formats
real weights come in (a timm classification checkpoint and an open_clip CLIP state dict);
:mod:`vloss.pretrain.config` its settings. The Ray Train job is ``jobs/pretrain.py``.
"""
