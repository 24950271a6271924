"""VLOSS: Vision-Language Omni-Supervised Segmentation.

The model library: model parts, losses, data formats, inference and metrics.
It never imports ray, so it runs and tests anywhere; everything distributed
lives in ``pipelines/``.
"""

__version__ = "0.1.0"
