"""The fixed vocabulary of the synthetic omni-supervised world.

Thing classes are compositional: a colour word times a shape word ("purple star",
"red ring"). Stuff classes are textured regions ("sky", "brick wall", "tile floor").
Every split of the world draws its label space from these tables, so that a class
that no training annotation ever names (an *unseen* class) is still a new
combination of words the captions have taught.

The vocabulary does not depend on the seed or the world size: category ids are
stable across every generated world.

Colour x shape combinations are split into groups by ``(colour + 3 * shape) % 10``.
Because 3 generates Z/10, every group holds exactly one combination per colour and
covers all ten shapes, so every word of an unseen group also occurs in a seen one:

* groups 0, 1 -> COCO-panoptic things (24 classes);
* groups 2, 3, 4 -> Objects365-only things (36); Objects365 also has group 0 (48 in all);
* group 5 -> unseen things (12): in ADE20K, LVIS and the image-text captions only.
"""

from __future__ import annotations

from dataclasses import dataclass

# name -> RGB of the colour word; what a thing of that colour is painted with.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 39, 40),
    "orange": (255, 127, 14),
    "yellow": (240, 220, 30),
    "green": (44, 160, 44),
    "blue": (31, 90, 220),
    "purple": (148, 60, 189),
    "pink": (247, 129, 191),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "brown": (140, 86, 45),
    "cyan": (23, 210, 225),
    "grey": (128, 128, 128),
}

# Shape words; vloss.data.synthetic.render knows how to rasterise each one.
SHAPES: tuple[str, ...] = (
    "circle", "ellipse", "square", "triangle", "diamond",
    "hexagon", "star", "cross", "ring", "crescent",
)


@dataclass(frozen=True)
class StuffStyle:
    """How a stuff class is textured.

    Args:
        kind: texture family: "gradient", "noise", "stripes", "bricks" or "grid".
        colour_a: main RGB colour.
        colour_b: second RGB colour (gradient end, stripe, mortar or grout colour).
        scale: feature size in pixels (noise cell, stripe period, brick height, tile size).
        phrase: how a caption places things on it ("on grass", "under the sky").
        supercategory: COCO-style supercategory name.
    """

    kind: str
    colour_a: tuple[int, int, int]
    colour_b: tuple[int, int, int]
    scale: int
    phrase: str
    supercategory: str


STUFF: dict[str, StuffStyle] = {
    "sky": StuffStyle("gradient", (90, 150, 230), (200, 225, 250), 0, "under the sky", "sky"),
    "grass": StuffStyle("noise", (60, 140, 50), (110, 190, 80), 6, "on grass", "plant"),
    "water": StuffStyle("stripes", (30, 90, 160), (70, 140, 200), 14, "in the water", "water"),
    "sand": StuffStyle("noise", (215, 190, 130), (235, 215, 165), 3, "on sand", "ground"),
    "brick wall": StuffStyle("bricks", (165, 65, 45), (210, 200, 185), 16,
                             "in front of a brick wall", "wall"),
    "road": StuffStyle("noise", (85, 85, 90), (115, 115, 120), 2, "on the road", "ground"),
    "wood floor": StuffStyle("stripes", (150, 100, 55), (120, 75, 40), 22,
                             "on a wood floor", "floor"),
    "dirt": StuffStyle("noise", (120, 90, 60), (95, 70, 45), 8, "on dirt", "ground"),
    # Unseen stuff: only the ADE20K split annotates them; captions mention them.
    "snow": StuffStyle("noise", (235, 240, 248), (210, 220, 235), 5, "on snow", "ground"),
    "tile floor": StuffStyle("grid", (225, 225, 215), (150, 150, 150), 24,
                             "on a tile floor", "floor"),
    "stone wall": StuffStyle("bricks", (140, 140, 135), (90, 90, 90), 26,
                             "in front of a stone wall", "wall"),
}

PANOPTIC_STUFF: tuple[str, ...] = (
    "sky", "grass", "water", "sand", "brick wall", "road", "wood floor", "dirt")
UNSEEN_STUFF: tuple[str, ...] = ("snow", "tile floor", "stone wall")
ADE_STUFF: tuple[str, ...] = (
    "sky", "grass", "water", "sand", "brick wall", "wood floor") + UNSEEN_STUFF


def thing_name(colour: str, shape: str) -> str:
    """Class name of a thing: ``"<colour> <shape>"``."""
    return f"{colour} {shape}"


def split_thing_name(name: str) -> tuple[str, str]:
    """Inverse of :func:`thing_name` (the shape is the last word)."""
    colour, shape = name.rsplit(" ", 1)
    if colour not in COLOURS or shape not in SHAPES:
        raise KeyError(f"not a synthetic thing class: {name!r}")
    return colour, shape


def _group(group: int) -> tuple[str, ...]:
    """The 12 combinations of one group, in colour order."""
    names = []
    colours = list(COLOURS)
    for c, colour in enumerate(colours):
        for s, shape in enumerate(SHAPES):
            if (c + 3 * s) % 10 == group:
                names.append(thing_name(colour, shape))
    return tuple(names)


def plural(word: str) -> str:
    """English plural of a shape word (the last word of a thing name)."""
    if word.endswith(("s", "x", "sh", "ch")):
        return word + "es"
    return word + "s"


@dataclass(frozen=True)
class WorldVocabulary:
    """Every label space of the synthetic world (class names, in category-id order).

    Args:
        panoptic_things: COCO-panoptic thing classes (train and val).
        panoptic_stuff: COCO-panoptic stuff classes.
        objects365_things: Objects365 thing classes (boxes only; larger than panoptic).
        ade_things: ADE20K-panoptic thing classes (includes unseen ones).
        ade_stuff: ADE20K-panoptic stuff classes (includes unseen ones).
        lvis_things: LVIS thing classes (every thing class of the world).
        unseen_things: thing classes by design absent from all training annotations.
        unseen_stuff: stuff classes by design absent from all training annotations.
    """

    panoptic_things: tuple[str, ...]
    panoptic_stuff: tuple[str, ...]
    objects365_things: tuple[str, ...]
    ade_things: tuple[str, ...]
    ade_stuff: tuple[str, ...]
    lvis_things: tuple[str, ...]
    unseen_things: tuple[str, ...]
    unseen_stuff: tuple[str, ...]

    @property
    def all_things(self) -> tuple[str, ...]:
        """Every thing class, panoptic first, then Objects365-only, then unseen."""
        out = list(self.panoptic_things)
        out += [n for n in self.objects365_things if n not in out]
        out += [n for n in self.unseen_things if n not in out]
        return tuple(out)

    @property
    def all_stuff(self) -> tuple[str, ...]:
        """Every stuff class (seen first, then unseen)."""
        return tuple(self.panoptic_stuff) + tuple(
            n for n in self.unseen_stuff if n not in self.panoptic_stuff)

    @property
    def designed_seen(self) -> tuple[str, ...]:
        """Classes the training splits (panoptic + Objects365) are built to annotate."""
        out = list(self.panoptic_things) + list(self.panoptic_stuff)
        out += [n for n in self.objects365_things if n not in out]
        return tuple(out)

    def words(self) -> tuple[str, ...]:
        """Every word of every class name, sorted."""
        words = set()
        for name in self.all_things + self.all_stuff:
            words.update(name.split())
        return tuple(sorted(words))


def build_vocabulary() -> WorldVocabulary:
    """The world's fixed vocabulary (independent of seed and size)."""
    g = {k: _group(k) for k in range(6)}
    panoptic_things = g[0] + g[1]
    # Objects365 lists its classes in its own order: the shared group first (the
    # head of its long tail), then its own groups.
    objects365_things = g[0] + g[2] + g[3] + g[4]
    unseen_things = g[5]
    # ADE20K: some classes seen in both training splits, some only in Objects365,
    # and every unseen one.
    ade_things = g[0] + g[2] + g[5]
    lvis_things = panoptic_things + g[2] + g[3] + g[4] + g[5]
    return WorldVocabulary(
        panoptic_things=panoptic_things,
        panoptic_stuff=PANOPTIC_STUFF,
        objects365_things=objects365_things,
        ade_things=ade_things,
        ade_stuff=ADE_STUFF,
        lvis_things=lvis_things,
        unseen_things=unseen_things,
        unseen_stuff=UNSEEN_STUFF,
    )


def class_colour(name: str) -> tuple[int, int, int]:
    """Display colour of a class (its colour word, or its stuff texture colour)."""
    if name in STUFF:
        return STUFF[name].colour_a
    colour, _ = split_thing_name(name)
    return COLOURS[colour]
