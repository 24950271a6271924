"""Class-name cleaning (vloss.data.class_names) on the real COCO panoptic and LVIS v0.5 vocabularies,
and on Objects365- and ADE20K-150-style names written out here (no files for those exist)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vloss.config_io import from_dict, to_dict
from vloss.data.class_names import (
    COCO_PANOPTIC_SUFFIXES,
    KNOWN_NAME_FIXES,
    SYNONYM_MODES,
    NameCleaning,
    clean_name,
    clean_names,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
COCO_CATEGORIES = DATA / "coco-panoptic-sample" / "panoptic_coco_categories.json"
LVIS_JSON = DATA / "lvis-v0.5-val-100" / "lvis_val_100.json"

ALL_SETTINGS = [
    NameCleaning(synonyms=s, drop_parenthetical=d, lowercase=lo)
    for s, d, lo in itertools.product(SYNONYM_MODES, (False, True), (False, True))
]

# Objects365 category names as published (casing, "/" alternatives, a trailing space kept).
OBJECTS365 = [
    "Person",
    "Glasses",
    "Monitor/TV",
    "Cabinet/shelf",
    "Bowl/Basin",
    "Trash bin Can",
    "Other Shoes",
    "Cigar/Cigarette ",
    "Cutting/chopping Board",
    "Washing Machine/Drying Machine",
]
# ADE20K-150 names: comma lists of WordNet synonyms.
ADE20K = [
    "wall",
    "building, edifice",
    "floor, flooring",
    "windowpane, window",
    "person, individual, someone, somebody, mortal, soul",
    "screen door, screen",
    "screen, silver screen, projection screen",
    "crt screen",
    "ashcan, trash can, garbage can, wastebin, ash bin, ash-bin, ashbin, dustbin, trash barrel, trash bin",
]


def _load(path: Path) -> object:
    if not path.exists():
        pytest.skip(f"real sample data not found: {path}")
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def coco_names() -> list[str]:
    cats = _load(COCO_CATEGORIES)
    assert len(cats) == 133
    return [c["name"] for c in cats]


@pytest.fixture(scope="module")
def lvis_names() -> list[str]:
    cats = _load(LVIS_JSON)["categories"]
    assert len(cats) == 1230
    return [c["name"] for c in cats]


def _check_clean(text: str) -> None:
    assert text and text == text.strip()
    assert "_" not in text and "  " not in text
    for suffix in COCO_PANOPTIC_SUFFIXES:
        assert suffix not in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("sky-other-merged", "sky"),
        ("wall-other-merged", "wall"),
        ("tree-merged", "tree"),
        ("playingfield", "playingfield"),
        ("door-stuff", "door"),
        ("mirror-stuff", "mirror"),
        ("floor-wood", "floor wood"),
        ("floor-other-merged", "floor"),
        ("water-other", "water"),
        ("window-blind", "window blind"),
        ("building-other-merged", "building"),
        ("traffic light", "traffic light"),
    ],
)
def test_coco_panoptic_examples(raw: str, expected: str) -> None:
    assert clean_name(raw, NameCleaning()) == expected


@pytest.mark.parametrize(
    ("raw", "expected", "dropped"),
    [
        ("bow_(weapon)", "bow (weapon)", "bow"),
        ("bat_(animal)", "bat (animal)", "bat"),
        ("fire_engine", "fire engine", "fire engine"),
        ("flip-flop_(sandal)", "flip flop (sandal)", "flip flop"),
        ("Loafer_(type_of_shoe)", "loafer (type of shoe)", "loafer"),
        ("football_(American)", "football (american)", "football"),
        ("peeler_(tool_for_fruit_and_vegetables)", "peeler (tool for fruit and vegetables)", "peeler"),
        ("CD_player", "cd player", "cd player"),
        ("monitor_(computer_equipment) computer_monitor", "monitor (computer equipment)", "monitor"),
    ],
)
def test_lvis_examples(raw: str, expected: str, dropped: str) -> None:
    assert clean_name(raw, NameCleaning()) == expected
    assert clean_name(raw, NameCleaning(drop_parenthetical=True)) == dropped


def test_objects365_and_ade20k_names() -> None:
    cfg = NameCleaning()
    assert clean_names(OBJECTS365, cfg) == [
        "person",
        "glasses",
        "monitor",
        "cabinet",
        "bowl",
        "trash bin can",
        "other shoes",
        "cigar",
        "cutting board",
        "washing machine",
    ]
    assert clean_names(ADE20K, cfg) == [
        "wall",
        "building",
        "floor",
        "windowpane",
        "person",
        "screen door",
        "screen",
        "crt screen",
        "ashcan",
    ]


def test_join_synonyms() -> None:
    cfg = NameCleaning(synonyms="join")
    assert clean_name("Monitor/TV", cfg) == "monitor or tv"
    assert clean_name("building, edifice", cfg) == "building or edifice"
    assert clean_name("Cutting/chopping Board", cfg) == "cutting board or chopping board"
    # "ash bin" and "ash-bin" clean to the same alternative, which is kept once
    joined = clean_name(ADE20K[-1], cfg)
    assert joined.split(" or ").count("ash bin") == 1
    assert clean_name("Monitor/TV", NameCleaning(synonyms="join", lowercase=False)) == "Monitor or TV"
    for settings in (NameCleaning(synonyms="join"), NameCleaning(synonyms="join", drop_parenthetical=True)):
        for text in clean_names(OBJECTS365 + ADE20K, settings):
            _check_clean(text)


def test_separators_inside_parentheses_do_not_split() -> None:
    cfg = NameCleaning(synonyms="join")
    assert clean_name("cooler_(for_food/drink)", cfg) == "cooler (for food/drink)"
    assert clean_name("cooler_(for_food, drink)", cfg) == "cooler (for food, drink)"
    assert clean_name("cooler_(for_food/drink)", NameCleaning(drop_parenthetical=True)) == "cooler"


def test_lowercase_switch() -> None:
    assert clean_name("Glasses", NameCleaning()) == "glasses"
    assert clean_name("Glasses", NameCleaning(lowercase=False)) == "Glasses"
    assert clean_name("Cabinet/shelf", NameCleaning(lowercase=False)) == "Cabinet"
    assert clean_name("football_(American)", NameCleaning(lowercase=False)) == "football (American)"


def test_disabled_is_identity(coco_names: list[str], lvis_names: list[str]) -> None:
    cfg = NameCleaning(enabled=False, synonyms="join", drop_parenthetical=True)
    for names in (coco_names, lvis_names, OBJECTS365, ADE20K):
        out = clean_names(names, cfg)
        assert out == names and out is not names
        assert [clean_name(n, cfg) for n in names] == names


@pytest.mark.parametrize("cfg", ALL_SETTINGS, ids=str)
def test_real_vocabularies_clean_and_distinct(cfg: NameCleaning, coco_names: list[str], lvis_names: list[str]) -> None:
    for names in (coco_names, lvis_names):
        cleaned = clean_names(names, cfg)
        assert len(cleaned) == len(names)
        assert len(set(cleaned)) == len(cleaned)
        for text in cleaned:
            _check_clean(text)
            assert "-" not in text
            if cfg.lowercase:
                assert text == text.lower()


def test_coco_has_no_parenthetical_collisions(coco_names: list[str]) -> None:
    # COCO needs no resolution: dropping parentheticals changes nothing there
    assert clean_names(coco_names, NameCleaning(drop_parenthetical=True)) == clean_names(coco_names, NameCleaning())


def test_lvis_parenthetical_collisions_keep_the_parenthetical(lvis_names: list[str]) -> None:
    kept = clean_names(lvis_names, NameCleaning())
    dropped = clean_names(lvis_names, NameCleaning(drop_parenthetical=True))
    one_by_one = [clean_name(n, NameCleaning(drop_parenthetical=True)) for n in lvis_names]
    resolved = {raw: text for raw, text, alone in zip(lvis_names, dropped, one_by_one) if text != alone}
    # the 7 real groups of LVIS v0.5 (bow, fish, mouse, octopus, pan, salmon, turkey), less plain "fish"
    assert resolved == {
        "bow_(weapon)": "bow (weapon)",
        "bow_(decorative_ribbons)": "bow (decorative ribbons)",
        "fish_(food)": "fish (food)",
        "mouse_(animal_rodent)": "mouse (animal rodent)",
        "mouse_(computer_equipment)": "mouse (computer equipment)",
        "octopus_(food)": "octopus (food)",
        "octopus_(animal)": "octopus (animal)",
        "pan_(for_cooking)": "pan (for cooking)",
        "pan_(metal_container)": "pan (metal container)",
        "salmon_(fish)": "salmon (fish)",
        "salmon_(food)": "salmon (food)",
        "turkey_(bird)": "turkey (bird)",
        "turkey_(food)": "turkey (food)",
    }
    assert dropped[lvis_names.index("fish")] == "fish"
    assert dropped[lvis_names.index("bat_(animal)")] == "bat"  # no collision: dropped as asked
    # resolved names are exactly the default (parenthetical-keeping) ones
    for raw, text in resolved.items():
        assert text == kept[lvis_names.index(raw)]
    # resolution is deterministic and independent of the order of the vocabulary
    reordered = list(reversed(lvis_names))
    assert dict(zip(reordered, clean_names(reordered, NameCleaning(drop_parenthetical=True)))) == dict(
        zip(lvis_names, dropped)
    )


@pytest.mark.parametrize(
    ("names", "cfg"),
    [
        (["Glasses", "glasses"], NameCleaning()),
        (["bow-tie", "bow_tie"], NameCleaning()),
        (["tree-merged", "tree"], NameCleaning()),
        (["screen door, screen", "screen door"], NameCleaning()),
        (["Monitor/TV", "monitor, tv"], NameCleaning(synonyms="join")),
        (["person", "person"], NameCleaning()),
    ],
)
def test_collisions_raise_naming_both_originals(names: list[str], cfg: NameCleaning) -> None:
    with pytest.raises(ValueError, match="same prompt") as err:
        clean_names(names, cfg)
    for raw in names:
        assert repr(raw) in str(err.value)
    assert "index 0" in str(err.value) and "index 1" in str(err.value)


def test_collisions_that_differ_only_by_case_pass_without_lowercase() -> None:
    assert clean_names(["Glasses", "glasses"], NameCleaning(lowercase=False)) == ["Glasses", "glasses"]


def test_known_fixes_apply_to_exact_names_only() -> None:
    cfg = NameCleaning()
    for raw in KNOWN_NAME_FIXES:
        _check_clean(clean_name(raw, cfg))
    assert clean_name("computer_monitor", cfg) == "computer monitor"


@pytest.mark.parametrize("raw", ["", "   ", "/", " , ", "_", "()"])
def test_empty_after_cleaning_raises(raw: str) -> None:
    with pytest.raises(ValueError, match="empty after cleaning"):
        clean_names(["person", raw], NameCleaning(drop_parenthetical=True))


def test_suffix_only_name_is_kept() -> None:
    assert clean_name("-stuff", NameCleaning()) == "stuff"


def test_non_string_name_raises() -> None:
    with pytest.raises(TypeError, match="str"):
        clean_names(["person", 3], NameCleaning())  # type: ignore[list-item]
    with pytest.raises(TypeError, match="str"):
        clean_names([None], NameCleaning(enabled=False))  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"synonyms": "all"}, "synonyms"),
        ({"synonyms": "First"}, "synonyms"),
        ({"enabled": "yes"}, "enabled"),
        ({"drop_parenthetical": 1}, "drop_parenthetical"),
        ({"lowercase": None}, "lowercase"),
    ],
)
def test_bad_config_raises(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"NameCleaning.{field}"):
        NameCleaning(**kwargs)


def test_config_round_trip() -> None:
    cfg = NameCleaning(synonyms="join", drop_parenthetical=True, lowercase=False)
    data = to_dict(cfg)
    assert data == dataclasses.asdict(cfg)
    assert json.loads(json.dumps(data)) == data
    assert from_dict(data, NameCleaning) == cfg
    with pytest.raises(ValueError):
        from_dict({**data, "synonyms": "every"}, NameCleaning)


def test_module_does_not_import_torch() -> None:
    code = "import sys, vloss.data.class_names; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])
