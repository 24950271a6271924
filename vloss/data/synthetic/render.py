"""Scenes of the synthetic world: a label map first, then the image painted from it.

A scene is composed as a label map ``[H, W]`` of local segment indices (0 = void):
stuff regions are wavy horizontal bands, things are rasterised shapes painted on
top in order (later ones occlude earlier ones). The RGB image is then rendered
*from* the label map: every pixel's colour is a function of its segment (stuff
texture, thing colour with shading, darkened segment borders), so ground-truth
masks are pixel-exact by construction.

Only numpy and PIL are used; every random choice comes from the ``rng`` passed in,
so a scene is a deterministic function of its generator state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from vloss.data.synthetic.vocab import COLOURS, STUFF, StuffStyle, split_thing_name

MIN_AREA = 48          # smallest visible area (pixels) of a thing segment
KEEP_FRACTION = 0.35   # an occluded thing keeps at least this fraction of its area
MAX_TRIES = 8          # placements tried per object before it is left out of the scene


@dataclass
class SceneSegment:
    """One segment of a composed scene.

    Args:
        index: local index in the label map (1..N).
        name: class name ("red ring", "sky", ...).
        isthing: thing (instance) or stuff (region) class.
        iscrowd: a group of same-class things labelled as one segment.
        centre: (cx, cy) used for shading.
        radius: shape radius in pixels used for shading.
        angle: shading direction in radians.
    """

    index: int
    name: str
    isthing: bool
    iscrowd: bool = False
    centre: tuple[float, float] = (0.0, 0.0)
    radius: float = 1.0
    angle: float = 0.0


@dataclass
class Scene:
    """A rendered scene.

    Args:
        label: [H, W] int32 local segment indices, 0 = void.
        segments: the segments present in ``label`` (area > 0), by index.
        image: [H, W, 3] uint8 rendered picture.
    """

    label: np.ndarray
    segments: list[SceneSegment]
    image: np.ndarray


# ----------------------------------------------------------------------------- shapes

def _regular(n: int, r: float, phase: float = 0.0) -> np.ndarray:
    t = phase + np.arange(n) * (2 * math.pi / n)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)  # [n, 2]


def shape_polygons(shape: str, r: float, aspect: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Outline polygons of a shape centred at the origin, before rotation.

    Args:
        shape: one of ``SHAPES``.
        r: radius in pixels.
        aspect: y-squash for ellipse and diamond (0 < aspect <= 1).

    Returns:
        (filled polygons, hole polygons), each an [N, 2] array of (x, y).
    """
    if shape == "circle":
        return [_regular(64, r)], []
    if shape == "ellipse":
        return [_regular(64, r) * np.array([1.0, aspect])], []
    if shape == "square":
        return [_regular(4, r, math.pi / 4)], []
    if shape == "triangle":
        return [_regular(3, r, -math.pi / 2)], []
    if shape == "diamond":
        return [_regular(4, r) * np.array([aspect, 1.0])], []
    if shape == "hexagon":
        return [_regular(6, r)], []
    if shape == "star":
        pts = _regular(10, r, -math.pi / 2)
        pts[1::2] *= 0.45
        return [pts], []
    if shape == "cross":
        a = 0.33 * r
        pts = [(-a, -r), (a, -r), (a, -a), (r, -a), (r, a), (a, a), (a, r), (-a, r),
               (-a, a), (-r, a), (-r, -a), (-a, -a)]
        return [np.asarray(pts, dtype=np.float64)], []
    if shape == "ring":
        return [_regular(64, r)], [_regular(64, 0.55 * r)]
    if shape == "crescent":
        return [_regular(64, r)], [_regular(64, 0.85 * r) + np.array([0.45 * r, 0.0])]
    raise KeyError(f"unknown shape {shape!r}")


def shape_mask(shape: str, cx: float, cy: float, r: float, angle: float, aspect: float,
               height: int, width: int) -> np.ndarray:
    """Rasterise a rotated shape.

    Args:
        shape: shape word.
        cx, cy: centre in pixels.
        r: radius in pixels.
        angle: rotation in radians.
        aspect: squash factor for ellipse/diamond.
        height, width: canvas size.

    Returns:
        [H, W] bool mask.
    """
    fills, holes = shape_polygons(shape, r, aspect)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for polys, value in ((fills, 1), (holes, 0)):
        for p in polys:
            q = p @ rot.T + np.array([cx, cy])  # [N, 2]
            draw.polygon([(float(x), float(y)) for x, y in q], fill=value)
    return np.asarray(canvas, dtype=bool)


# ----------------------------------------------------------------------------- textures

def _mix(a: tuple[int, int, int], b: tuple[int, int, int], t: np.ndarray) -> np.ndarray:
    """Blend two colours by t ([H, W] in [0, 1]) -> [H, W, 3] float32."""
    a_ = np.asarray(a, np.float32)
    b_ = np.asarray(b, np.float32)
    return a_ + (b_ - a_) * t[..., None].astype(np.float32)


def value_noise(height: int, width: int, cell: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth noise in [0, 1]: a coarse random grid upsampled bilinearly. [H, W] float32."""
    gh, gw = height // max(cell, 1) + 2, width // max(cell, 1) + 2
    grid = rng.random((gh, gw), dtype=np.float32)
    up = Image.fromarray(grid, mode="F").resize((width, height), Image.BILINEAR)
    return np.asarray(up, dtype=np.float32)


def texture(style: StuffStyle, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Procedural texture of a stuff class over the whole frame -> [H, W, 3] float32."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if style.kind == "gradient":
        tilt = rng.uniform(-0.2, 0.2)
        t = np.clip(yy / height + tilt * (xx / width - 0.5), 0, 1)
        return _mix(style.colour_a, style.colour_b, t)
    if style.kind == "noise":
        t = 0.7 * value_noise(height, width, style.scale, rng) \
            + 0.3 * value_noise(height, width, max(1, style.scale * 4), rng)
        return _mix(style.colour_a, style.colour_b, t)
    if style.kind == "stripes":
        amp, period = rng.uniform(2, 6), rng.uniform(40, 90)
        phase = rng.uniform(0, 2 * math.pi)
        wave = yy + amp * np.sin(2 * math.pi * xx / period + phase)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * wave / style.scale)
        return _mix(style.colour_a, style.colour_b, t)
    if style.kind in ("bricks", "grid"):
        s = style.scale
        bw = 2 * s if style.kind == "bricks" else s
        row = (yy // s).astype(np.int64)
        shift = (row % 2) * (s if style.kind == "bricks" else 0)
        col = ((xx + shift) // bw).astype(np.int64)
        shade = rng.uniform(0.85, 1.1, size=(int(row.max()) + 1, int(col.max()) + 1))
        out = np.asarray(style.colour_a, np.float32)[None, None, :] \
            * shade[row, col][..., None].astype(np.float32)  # [H, W, 3]
        mortar = ((yy % s) < 2) | (((xx + shift) % bw) < 2)
        out[mortar] = np.asarray(style.colour_b, np.float32)
        return out
    raise KeyError(f"unknown texture kind {style.kind!r}")


# ----------------------------------------------------------------------------- scenes

def _stuff_bands(names: list[str], height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Label map [H, W] int32 of wavy horizontal bands, band k labelled k + 1."""
    label = np.ones((height, width), dtype=np.int32)
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)[:, None]
    cuts = np.sort(rng.uniform(0.2, 0.8, size=len(names) - 1)) * height
    for k, base in enumerate(cuts):
        amp = rng.uniform(0, 0.06) * height
        period = rng.uniform(0.5, 1.5) * width
        phase = rng.uniform(0, 2 * math.pi)
        edge = base + amp * np.sin(2 * math.pi * xs / period + phase)  # [W]
        label[ys >= edge[None, :]] = k + 2
    return label


class _Painter:
    """Paints segments onto a label map, refusing placements that hide earlier things."""

    def __init__(self, label: np.ndarray, capacity: int) -> None:
        self.label = label                                  # [H, W] int32
        self.area = np.bincount(label.ravel(), minlength=capacity).astype(np.int64)
        self.floor = np.zeros(capacity, dtype=np.int64)     # least area each thing must keep

    def try_paint(self, mask: np.ndarray, index: int, protect: bool) -> bool:
        """Paint ``mask`` with ``index`` unless a protected segment would lose too much."""
        own = int(mask.sum())
        if index != 0 and own < MIN_AREA:
            return False
        lost = np.bincount(self.label[mask], minlength=len(self.area))
        if np.any(self.area - lost < self.floor):
            return False
        self.label[mask] = index
        self.area -= lost
        self.area[index] += own
        if protect:
            self.floor[index] = max(MIN_AREA, int(KEEP_FRACTION * own))
        return True


def compose_scene(rng: np.random.Generator, height: int, width: int, stuff: list[str],
                  things: list[str], crowd: str | None = None, void_blobs: int = 0) -> Scene:
    """Compose and render one scene.

    Args:
        rng: the scene's random generator.
        height, width: image size in pixels.
        stuff: stuff classes, top to bottom (at least one, no repeats).
        things: thing classes to place, painted in order (repeats are instances).
        crowd: a thing class painted as one crowd segment of 4-7 small shapes, or None.
        void_blobs: number of unlabelled clutter blobs (label 0) painted last.

    Returns:
        The rendered :class:`Scene`; things that could not be placed visibly are absent.
    """
    if not stuff:
        raise ValueError("a scene needs at least one stuff class")
    capacity = len(stuff) + len(things) + 2
    label = _stuff_bands(stuff, height, width, rng)
    segments = [SceneSegment(k + 1, n, False) for k, n in enumerate(stuff)]
    painter = _Painter(label, capacity)
    side = min(height, width)

    order: list[tuple[str, bool]] = [(n, False) for n in things]
    if crowd is not None:
        order.insert(int(rng.integers(0, len(order) + 1)), (crowd, True))
    for name, is_crowd in order:
        _, shape = split_thing_name(name)
        index = len(segments) + 1
        for _ in range(MAX_TRIES):
            if is_crowd:
                cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height
                r = rng.uniform(0.05, 0.08) * side
                mask = np.zeros((height, width), dtype=bool)
                for _ in range(int(rng.integers(4, 8))):
                    mask |= shape_mask(shape, cx + rng.normal(0, 2.2 * r), cy + rng.normal(0, 2.2 * r),
                                       r, rng.uniform(0, 2 * math.pi), 1.0, height, width)
                spread = 3.0 * r
            else:
                r = rng.uniform(0.07, 0.2) * side
                cx, cy = rng.uniform(0.05, 0.95) * width, rng.uniform(0.05, 0.95) * height
                mask = shape_mask(shape, cx, cy, r, rng.uniform(0, 2 * math.pi),
                                  rng.uniform(0.45, 0.7), height, width)
                spread = r
            if painter.try_paint(mask, index, protect=True):
                segments.append(SceneSegment(index, name, True, is_crowd, (cx, cy), spread,
                                             rng.uniform(0, 2 * math.pi)))
                break
    for _ in range(void_blobs):
        r = rng.uniform(0.04, 0.1) * side
        mask = shape_mask("ellipse", rng.uniform(0, width), rng.uniform(0, height), r,
                          rng.uniform(0, 2 * math.pi), rng.uniform(0.4, 1.0), height, width)
        painter.try_paint(mask, 0, protect=False)

    present = painter.area > 0
    segments = [s for s in segments if present[s.index]]
    image = render(label, segments, rng)
    return Scene(label=label, segments=segments, image=image)


def render(label: np.ndarray, segments: list[SceneSegment], rng: np.random.Generator) -> np.ndarray:
    """Paint the picture from the label map.

    Args:
        label: [H, W] int32 local segment indices (0 = void).
        segments: the segments present in ``label``.
        rng: generator for textures and grain.

    Returns:
        [H, W, 3] uint8 image.
    """
    h, w = label.shape
    out = np.zeros((h, w, 3), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    void = label == 0
    if void.any():
        out[void] = _mix((105, 100, 95), (160, 155, 150), value_noise(h, w, 4, rng))[void]
    is_thing = np.zeros(int(label.max()) + 1, dtype=bool)
    for seg in segments:
        pix = label == seg.index
        if not seg.isthing:
            out[pix] = texture(STUFF[seg.name], h, w, rng)[pix]
            continue
        is_thing[seg.index] = True
        colour, _ = split_thing_name(seg.name)
        proj = ((xx[pix] - seg.centre[0]) * math.cos(seg.angle)
                + (yy[pix] - seg.centre[1]) * math.sin(seg.angle)) / max(seg.radius, 1.0)
        shade = 0.9 + 0.15 * np.clip(proj, -1, 1)  # [P]
        out[pix] = np.asarray(COLOURS[colour], np.float32)[None, :] * shade[:, None] + 12 * (1 - shade[:, None])
    # Darken thing borders so touching instances of one class stay distinguishable.
    edge = np.zeros((h, w), dtype=bool)
    dx = label[:, 1:] != label[:, :-1]
    dy = label[1:, :] != label[:-1, :]
    edge[:, 1:] |= dx
    edge[:, :-1] |= dx
    edge[1:, :] |= dy
    edge[:-1, :] |= dy
    edge &= is_thing[label]
    out[edge] *= 0.55
    out += rng.normal(0.0, 3.0, size=out.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
