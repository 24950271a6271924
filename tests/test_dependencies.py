"""Dependencies that must not drift under the code (issue #26 item 4)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_open_clip_still_has_the_private_names_the_text_tower_uses():
    import open_clip
    from open_clip import model as oc_model
    from open_clip.transformer import TextTransformer

    pin = re.search(r'"open_clip_torch([^"]*)"', (ROOT / "pyproject.toml").read_text()).group(1)
    hint = (f"open_clip {open_clip.__version__} moved a private name vloss/model/text_encoder.py relies on; "
            f"pyproject pins open_clip_torch{pin}: install a version in that range or port the text tower")
    assert callable(getattr(oc_model, "_build_text_tower", None)), hint
    assert callable(getattr(TextTransformer, "_embeds", None)), hint


def test_no_private_ray_modules_are_used():
    used = [f"{p.relative_to(ROOT)}:{n + 1}" for folder in ("vloss", "pipelines", "jobs", "bench", "tools")
            for p in (ROOT / folder).rglob("*.py")
            for n, line in enumerate(p.read_text().splitlines()) if re.search(r"\bray\._private\b", line)]
    assert not used, f"ray._private is not a public API and changes between releases: {used}"
