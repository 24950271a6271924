"""Image decoding for every stage, torch-free: the project's one decoder (:mod:`vloss.data.images`).

Ray workers import the module that defines a task function; decode tasks that imported torch
(through a model module) would spend seconds of a small machine on imports they never use. This
module and :mod:`vloss.data.images` import only numpy and PIL, and a test proves the decode
modules of the stages stay so.
"""

from __future__ import annotations

from vloss.data.images import decode_image as decode_rgb

__all__ = ["decode_rgb"]
