"""Class names as prompts: one cleaning rule for the CLIP text encoder, in training and evaluation.

The classifier is a CLIP text encoder, so a class name *is* the classifier weight: the same
class must be prompted with the same string when training and when evaluating. The raw names of
the vocabularies are annotation artefacts, not words; :func:`clean_names` turns a vocabulary's
names into prompt words, and :class:`NameCleaning` (a plain dataclass, kept in the model config)
records which rule was used and lets it be switched off.

Rules, in the order :func:`clean_name` applies them (each with the data it comes from):

0. Known broken names are replaced first (:data:`KNOWN_NAME_FIXES`): LVIS v0.5 names category 708
   ``"monitor_(computer_equipment) computer_monitor"`` (a synonym glued onto the name); the
   published Objects365 list names ``"Cutting/chopping Board"`` (a shared head noun, which the
   split of rule 1 would cut to ``"cutting"``; no Objects365 file is here to check the spelling
   against). Exact, case-sensitive matches only; a name not listed is cleaned by the rules alone.
1. Alternatives are split off: Objects365 writes them as ``"a/b"`` (``"Monitor/TV"``,
   ``"Cabinet/shelf"``), ADE20K-150 as comma lists of WordNet synonyms (``"building, edifice"``,
   ``"windowpane, window"``). Separators inside parentheses do not split. Each alternative is then
   cleaned on its own (rules 2-6), empty ones are dropped, and repeats are dropped.
2. COCO panoptic suffixes ``-merged``, ``-other`` and ``-stuff`` (:data:`COCO_PANOPTIC_SUFFIXES`)
   are stripped from the end, repeatedly: ``"sky-other-merged"`` -> ``"sky"``, ``"door-stuff"`` ->
   ``"door"``. They mark how the panoptic task merged COCO-Stuff classes, not what the class is.
3. Every remaining ``-`` and ``_`` becomes a space: COCO ``"floor-wood"`` -> ``"floor wood"``, LVIS
   ``"fire_engine"`` -> ``"fire engine"``, ``"bow-tie"`` -> ``"bow tie"``.
4. LVIS parenthetical senses (``"bow_(weapon)"``) become ``"bow (weapon)"``; with
   ``drop_parenthetical`` they are removed (``"bow"``), see the collision rule below.
5. Runs of whitespace collapse to one space; leading/trailing whitespace goes (Objects365 has
   names with a trailing space, e.g. ``"Cigar/Cigarette "``).
6. With ``lowercase``, the result is lower-cased (Objects365 and LVIS mix cases: ``"Glasses"``,
   ``"Loafer_(type_of_shoe)"``). open_clip's tokenizer lower-cases too, so this mainly makes the
   recorded prompts match what the encoder sees.

The alternatives are then combined by ``synonyms``: ``"first"`` keeps the first one (the
annotators' primary name), ``"join"`` joins them with ``" or "`` (``"monitor or tv"``).

Collisions: cleaning must never give two classes of one vocabulary the same prompt silently.
:func:`clean_names` checks the whole vocabulary. The one real case, found in LVIS v0.5 (1230
classes) with ``drop_parenthetical=True``, is resolved deterministically: every class of a
colliding group keeps its parenthetical (``"bow_(weapon)"`` / ``"bow_(decorative_ribbons)"`` ->
``"bow (weapon)"`` / ``"bow (decorative ribbons)"``, while ``"fish"`` / ``"fish_(food)"`` ->
``"fish"`` / ``"fish (food)"``); the 7 groups are bow, fish, mouse, octopus, pan, salmon, turkey.
Any collision left after that (duplicate raw names, two names differing only by case or by
``-`` vs ``_``, two alternatives lists with the same first entry) raises ``ValueError`` naming
the originals. COCO panoptic (133 classes) has no collision under any setting. Because of that
resolution a class's prompt can depend on the rest of its vocabulary, so train and evaluate with
:func:`clean_names` over the same vocabulary list, not :func:`clean_name` one name at a time.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "COCO_PANOPTIC_SUFFIXES",
    "KNOWN_NAME_FIXES",
    "SYNONYM_MODES",
    "NameCleaning",
    "clean_name",
    "clean_names",
]

SYNONYM_MODES = ("first", "join")
"""Values of :attr:`NameCleaning.synonyms`."""

COCO_PANOPTIC_SUFFIXES = ("-merged", "-other", "-stuff")
"""Suffixes that COCO panoptic adds to merged / catch-all stuff classes (rule 2)."""

KNOWN_NAME_FIXES: dict[str, str] = {
    # LVIS v0.5 category 708: a synonym glued onto the name.
    "monitor_(computer_equipment) computer_monitor": "monitor_(computer_equipment)",
    # Objects365: "cutting board" or "chopping board", not "cutting" or "chopping board".
    "Cutting/chopping Board": "Cutting Board/Chopping Board",
}
"""Raw names that no general rule handles, replaced before cleaning (rule 0); exact matches."""

_WHITESPACE = re.compile(r"\s+")
_PARENTHETICAL = re.compile(r"\s*\([^()]*\)")
_OPEN_PAREN = re.compile(r"\s*\(\s*")
_CLOSE_PAREN = re.compile(r"\s*\)")


@dataclass
class NameCleaning:
    """How raw class names become the words that prompt the CLIP text encoder.

    Kept in the model config so that training and evaluation prompt with the same names; see the
    module docstring for the rules and where each comes from.

    Args:
        enabled: clean the names; ``False`` prompts with the raw names, unchanged.
        synonyms: what to do with alternatives (``"a/b"``, ``"a, b"``): ``"first"`` keeps the first,
            ``"join"`` prompts with ``"a or b"``.
        drop_parenthetical: remove LVIS senses in parentheses (``"bow (weapon)"`` -> ``"bow"``),
            except where two classes of one vocabulary would then share a name (those keep them).
        lowercase: lower-case the cleaned names.
    """

    enabled: bool = True
    synonyms: str = "first"
    drop_parenthetical: bool = False
    lowercase: bool = True

    def __post_init__(self) -> None:
        for name in ("enabled", "drop_parenthetical", "lowercase"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise ValueError(f"NameCleaning.{name} must be a bool, got {value!r}")
        if self.synonyms not in SYNONYM_MODES:
            raise ValueError(f"NameCleaning.synonyms must be one of {SYNONYM_MODES}, got {self.synonyms!r}")


def _split_alternatives(name: str) -> list[str]:
    """Split ``name`` at ``/`` and ``,`` that are not inside parentheses.

    Args:
        name: a raw class name.

    Returns:
        The alternatives, unstripped (a name without separators gives one).
    """
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in name:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(depth - 1, 0)
        elif ch in "/," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _strip_panoptic_suffixes(text: str) -> str:
    """Remove COCO panoptic suffixes from the end of ``text`` until none is left (rule 2).

    Args:
        text: one alternative of a name, stripped of surrounding whitespace.

    Returns:
        ``text`` without trailing ``-merged`` / ``-other`` / ``-stuff``; a text that is only a
        suffix (``"-stuff"``) is kept, so that it does not become empty.
    """
    changed = True
    while changed:
        changed = False
        for suffix in COCO_PANOPTIC_SUFFIXES:
            if text.lower().endswith(suffix) and len(text) > len(suffix):
                text = text[: -len(suffix)].rstrip()
                changed = True
    return text


def _clean_alternative(text: str, cfg: NameCleaning) -> str:
    """Apply rules 2-6 to one alternative.

    Args:
        text: one alternative of a raw name.
        cfg: the cleaning settings.

    Returns:
        The cleaned alternative; may be empty.
    """
    text = _strip_panoptic_suffixes(text.strip())
    text = text.replace("-", " ").replace("_", " ")
    if cfg.drop_parenthetical:
        while True:
            dropped = _PARENTHETICAL.sub(" ", text)
            if dropped == text:
                break
            text = dropped
    else:
        text = _CLOSE_PAREN.sub(")", _OPEN_PAREN.sub(" (", text))
    text = _WHITESPACE.sub(" ", text).strip()
    return text.lower() if cfg.lowercase else text


def clean_name(name: str, cfg: NameCleaning) -> str:
    """Clean one class name (rules 0-6 of the module docstring, then ``cfg.synonyms``).

    This does not resolve collisions with other classes; to prompt a vocabulary use
    :func:`clean_names`.

    Args:
        name: the raw class name, as in the dataset's category list.
        cfg: the cleaning settings.

    Returns:
        The prompt word(s); ``name`` itself when ``cfg.enabled`` is false.

    Raises:
        TypeError: ``name`` is not a string.
        ValueError: nothing is left of ``name`` after cleaning.
    """
    if not isinstance(name, str):
        raise TypeError(f"class name must be a str, got {type(name).__name__}: {name!r}")
    if not cfg.enabled:
        return name
    raw = KNOWN_NAME_FIXES.get(name, name)
    alternatives: list[str] = []
    for part in _split_alternatives(raw):
        cleaned = _clean_alternative(part, cfg)
        if cleaned and cleaned not in alternatives:
            alternatives.append(cleaned)
    if not alternatives:
        raise ValueError(f"class name {name!r} is empty after cleaning")
    if cfg.synonyms == "first":
        return alternatives[0]
    return " or ".join(alternatives)


def _collisions(cleaned: Sequence[str]) -> list[list[int]]:
    """Groups of indices whose cleaned names are equal.

    Args:
        cleaned: cleaned names of one vocabulary.

    Returns:
        One list of indices (ascending) per repeated name, in order of first occurrence.
    """
    where: dict[str, list[int]] = defaultdict(list)
    for i, text in enumerate(cleaned):
        where[text].append(i)
    return [idxs for idxs in where.values() if len(idxs) > 1]


def clean_names(names: Sequence[str], cfg: NameCleaning) -> list[str]:
    """Clean a whole vocabulary, making sure that no two classes end up with the same prompt.

    With ``drop_parenthetical``, classes whose names collide after dropping keep their
    parenthetical (see the module docstring); any other collision is an error.

    Args:
        names: the raw class names of one vocabulary, in class-index order.
        cfg: the cleaning settings.

    Returns:
        The cleaned names, in the same order; a copy of ``names`` when ``cfg.enabled`` is false.

    Raises:
        TypeError: a name is not a string.
        ValueError: a name is empty after cleaning, or two different classes (two indices) clean
            to the same string; the message names the originals.
    """
    names = list(names)
    if not cfg.enabled:
        for name in names:
            clean_name(name, cfg)  # type check only
        return names
    cleaned = [clean_name(name, cfg) for name in names]
    if cfg.drop_parenthetical:
        keep = dataclasses.replace(cfg, drop_parenthetical=False)
        for idxs in _collisions(cleaned):
            for i in idxs:
                cleaned[i] = clean_name(names[i], keep)
    groups = _collisions(cleaned)
    if groups:
        lines = [f"{cleaned[idxs[0]]!r} <- " + ", ".join(f"{names[i]!r} (index {i})" for i in idxs) for idxs in groups]
        raise ValueError(
            "class name cleaning maps different classes to the same prompt: "
            + "; ".join(lines)
            + f" (settings: {cfg}); change the names or the NameCleaning settings"
        )
    return cleaned
