"""The synthetic omni-supervised world: every dataset the system consumes, in its real layout.

``python -m vloss.data.synthetic --out DIR`` (or :func:`generate_world`) writes the tree of
``docs/DATA_LAYOUT.md``; :func:`load_world` reads its ``world.json`` back. Modules:

* ``world``: the layout (``PATHS``), ``WorldSizes``, ``generate_world``, ``load_world``.
* one writer per dataset: ``coco_panoptic`` (+ COCO captions), ``objects365``, ``image_text``,
  ``ade20k``, ``lvis``; ``panoptic`` is the split writer the two panoptic datasets share.
* ``vocab`` (class names), ``render`` (scenes drawn as label map + image), ``scenes``
  (category tables, recipes, captions, annotations), ``files`` (JSON / image writing).
* ``cli``: the command line.
"""

from __future__ import annotations

from vloss.data.synthetic.cli import main
from vloss.data.synthetic.files import GENERATOR_VERSION
from vloss.data.synthetic.world import PATHS, WorldSizes, format_summary, generate_world, load_world

__all__ = ["GENERATOR_VERSION", "PATHS", "WorldSizes", "format_summary", "generate_world", "load_world", "main"]
