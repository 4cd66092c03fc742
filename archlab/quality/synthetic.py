"""A built-in text-to-image domain with an exact evaluator: coloured shapes and their captions.

Scenes are generated on the fly, deterministically from ``(seed, index)``. A caption states
what a generated image can be checked for:

- one object:   "a large red circle on the left"       (colour, shape, size, position)
- a relation:   "a blue square left of a green triangle" (colours, shapes, relation)
- a count:      "three yellow squares"                  (colour, shape, count)

:func:`evaluate` parses an image back into objects (palette colours, connected components,
shape from how much of its bounding box a component fills, size from its area, position
from its centroid) and scores it against its scene per attribute. On this domain it plays
the role CLIP score plays on real data, exactly and with nothing to download.
:func:`frechet_distance` compares the feature statistics of generated and real images.

>>> scene = make_scene(0, 3)
>>> img = render(scene, 32)
>>> evaluate(img, scene)["score"]
1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage, linalg

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 190, 70), "blue": (50, 90, 230),
    "yellow": (235, 215, 40), "magenta": (210, 60, 210), "cyan": (40, 210, 220),
}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.16, "large": 0.30}  # half-extent as a fraction of the image side
POSITIONS = {"on the left": (0.5, 0.25), "on the right": (0.5, 0.75), "at the top": (0.25, 0.5),
             "at the bottom": (0.75, 0.5), "in the center": (0.5, 0.5)}  # (row, col) centres
RELATIONS = ("left of", "right of", "above", "below")
COUNT_WORDS = {2: "two", 3: "three"}
BACKGROUND = (0, 0, 0)
# words a caption can use, for the small text encoder's vocabulary
VOCABULARY = sorted({w for text in [*COLOURS, *SHAPES, *(s + "s" for s in SHAPES), *SIZES, *POSITIONS, *RELATIONS,
                                    *COUNT_WORDS.values(), "a"] for w in text.split()})


@dataclass(frozen=True)
class Obj:
    colour: str
    shape: str
    size: str
    centre: tuple[float, float]  # (row, col) as fractions of the side


@dataclass(frozen=True)
class Scene:
    kind: str  # "single" | "relation" | "count"
    objects: tuple[Obj, ...]
    caption: str
    relation: str = ""
    position: str = ""


def make_scene(seed: int, index: int) -> Scene:
    """Scene ``index`` of the domain with ``seed``; the same pair always gives the same scene."""
    rng = np.random.default_rng([seed, index])
    kind = rng.choice(["single", "relation", "count"], p=[0.5, 0.3, 0.2])
    colours = list(COLOURS)
    if kind == "single":
        colour, shape = rng.choice(colours), rng.choice(SHAPES)
        size, position = rng.choice(list(SIZES)), rng.choice(list(POSITIONS))
        obj = Obj(str(colour), str(shape), str(size), POSITIONS[str(position)])
        return Scene("single", (obj,), f"a {size} {colour} {shape} {position}", position=str(position))
    if kind == "relation":
        c1, c2 = rng.choice(colours, size=2, replace=False)
        s1, s2 = rng.choice(SHAPES), rng.choice(SHAPES)
        relation = str(rng.choice(RELATIONS))
        near, far = 0.28, 0.72
        offset = rng.uniform(-0.05, 0.05)
        a, b = {"left of": ((0.5 + offset, near), (0.5 - offset, far)), "right of": ((0.5 + offset, far), (0.5 - offset, near)),
                "above": ((near, 0.5 + offset), (far, 0.5 - offset)), "below": ((far, 0.5 + offset), (near, 0.5 - offset))}[relation]
        objs = (Obj(str(c1), str(s1), "small", a), Obj(str(c2), str(s2), "small", b))
        return Scene("relation", objs, f"a {c1} {s1} {relation} a {c2} {s2}", relation=relation)
    n = int(rng.choice([2, 3]))
    colour, shape = str(rng.choice(colours)), str(rng.choice(SHAPES))
    slots = [(0.27, 0.27), (0.27, 0.73), (0.73, 0.27), (0.73, 0.73)]
    picked = rng.choice(len(slots), size=n, replace=False)
    objs = tuple(Obj(colour, shape, "small", slots[int(i)]) for i in sorted(picked))
    return Scene("count", objs, f"{COUNT_WORDS[n]} {colour} {shape}s")


def render(scene: Scene, size: int) -> np.ndarray:
    """The scene as an (size, size, 3) uint8 image on a black background."""
    img = np.zeros((size, size, 3), dtype=np.uint8)
    rows, cols = np.mgrid[0:size, 0:size] + 0.5
    for obj in scene.objects:
        half = SIZES[obj.size] * size * (0.9 if scene.kind != "single" else 1.0)
        cr, cc = obj.centre[0] * size, obj.centre[1] * size
        dr, dc = rows - cr, cols - cc
        if obj.shape == "circle":
            mask = dr**2 + dc**2 <= half**2
        elif obj.shape == "square":
            mask = (np.abs(dr) <= half * 0.88) & (np.abs(dc) <= half * 0.88)
        else:  # upward triangle: apex at the top, base at the bottom
            top, bottom = cr - half, cr + half
            t = (rows - top) / (bottom - top)
            mask = (rows >= top) & (rows <= bottom) & (np.abs(dc) <= t * half)
        img[mask] = COLOURS[obj.colour]
    return img


# --------------------------------------------------------------------------- parsing

@dataclass(frozen=True)
class Detection:
    colour: str
    shape: str
    area: float  # fraction of the image
    centre: tuple[float, float]  # bounding-box centre (row, col), fractions of the side


_PALETTE = np.array([BACKGROUND, *COLOURS.values()], dtype=np.float32)
_NAMES = ["background", *COLOURS]


# The smallest object the domain draws is a small triangle in a two- or three-object scene:
# 2 x (0.9 x 0.16)^2 = 0.041 of the image. A component under half that is not an object but
# sampling speckle, which would otherwise count as an object of an unstated colour.
MIN_OBJECT_AREA = 0.02


def detect(image: np.ndarray, min_area: float = MIN_OBJECT_AREA) -> list[Detection]:
    """Objects in an image: pixels snapped to the nearest palette colour, connected components
    of at least ``min_area`` of the image that are compact (speckle and smears are dropped)."""
    img = np.asarray(image, dtype=np.float32)
    if img.max() <= 1.0 + 1e-6:
        img = img * 255.0
    size = img.shape[0]
    dist = ((img[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1)
    labels = dist.argmin(-1)
    out = []
    for ci in range(1, len(_NAMES)):
        mask = labels == ci
        if mask.sum() < max(2, min_area * size * size):
            continue
        comp, n = ndimage.label(mask)
        for k in range(1, n + 1):
            m = comp == k
            area = m.sum()
            if area < max(2, min_area * size * size):
                continue
            r, c = np.nonzero(m)
            h, w = r.max() - r.min() + 1, c.max() - c.min() + 1
            fill = area / (h * w)
            if fill < 0.3 or max(h, w) > 2.5 * min(h, w):
                continue  # not a compact shape: noise and smears are not objects
            shape = "square" if fill > 0.88 else "circle" if fill > 0.64 else "triangle"
            # the bounding box's centre, not the centroid: a triangle's centroid sits low
            out.append(Detection(_NAMES[ci], shape, area / (size * size), ((r.min() + r.max() + 1) / 2 / size, (c.min() + c.max() + 1) / 2 / size)))
    return out


def _region(centre: tuple[float, float]) -> str:
    r, c = centre
    if abs(r - 0.5) < 0.15 and abs(c - 0.5) < 0.15:
        return "in the center"
    if abs(c - 0.5) >= abs(r - 0.5):
        return "on the left" if c < 0.5 else "on the right"
    return "at the top" if r < 0.5 else "at the bottom"


def evaluate(image: np.ndarray, scene: Scene) -> dict[str, float]:
    """Per-attribute accuracy of an image against its scene, and their mean as ``score``.

    Attributes: ``colour`` (an object of each stated colour), ``shape`` (the largest such
    object has the stated shape), ``size`` and ``position`` (single objects), ``relation``
    (the two objects' centroids are ordered as stated), ``count`` (as many objects of the
    colour as stated), ``clean`` (no object of an unstated colour).
    """
    found = detect(image)
    by_colour: dict[str, list[Detection]] = {}
    for d in found:
        by_colour.setdefault(d.colour, []).append(d)
    for ds in by_colour.values():
        ds.sort(key=lambda d: -d.area)
    stated = {o.colour for o in scene.objects}
    result: dict[str, float] = {}
    colour_hits = [o.colour in by_colour for o in scene.objects]
    result["colour"] = float(np.mean(colour_hits))
    result["shape"] = float(np.mean([o.colour in by_colour and by_colour[o.colour][0].shape == o.shape for o in scene.objects]))
    result["clean"] = float(not (set(by_colour) - stated))
    if scene.kind == "single":
        o = scene.objects[0]
        d = by_colour.get(o.colour, [None])[0]
        large = SIZES["large"] ** 2 * 4 * 0.75  # about a large object's area fraction
        small = SIZES["small"] ** 2 * 4 * 0.75
        result["size"] = float(d is not None and (d.area > (large * small) ** 0.5) == (o.size == "large"))
        result["position"] = float(d is not None and _region(d.centre) == scene.position)
    elif scene.kind == "relation":
        a, b = scene.objects
        ok = a.colour in by_colour and b.colour in by_colour
        if ok:
            (ra, ca), (rb, cb) = by_colour[a.colour][0].centre, by_colour[b.colour][0].centre
            ok = {"left of": ca < cb, "right of": ca > cb, "above": ra < rb, "below": ra > rb}[scene.relation]
        result["relation"] = float(ok)
    else:
        result["count"] = float(len(by_colour.get(scene.objects[0].colour, [])) == len(scene.objects))
    result["score"] = float(np.mean(list(result.values())))
    return result


def evaluate_many(images: Sequence[np.ndarray], scenes: Sequence[Scene]) -> dict[str, float]:
    """Mean of each attribute over images (attributes average over the scenes that have them)."""
    sums: dict[str, list[float]] = {}
    for img, scene in zip(images, scenes):
        for k, v in evaluate(img, scene).items():
            sums.setdefault(k, []).append(v)
    return {k: float(np.mean(v)) for k, v in sums.items()}


# --------------------------------------------------------------------------- distribution

def features(image: np.ndarray) -> np.ndarray:
    """Palette-colour shares (7) and a 4x4 grid of foreground occupancy (16) of one image."""
    img = np.asarray(image, dtype=np.float32)
    if img.max() <= 1.0 + 1e-6:
        img = img * 255.0
    labels = ((img[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1).argmin(-1)
    shares = np.bincount(labels.ravel(), minlength=len(_NAMES)) / labels.size
    fg = (labels > 0).astype(np.float32)
    s = fg.shape[0] // 4 * 4
    grid = fg[:s, :s].reshape(4, s // 4, 4, s // 4).mean(axis=(1, 3)).ravel()
    return np.concatenate([shares, grid])


def frechet_distance(generated: Sequence[np.ndarray], real: Sequence[np.ndarray]) -> float:
    """Fréchet distance between Gaussians fitted to :func:`features` of two image sets
    (FID's formula on this domain's own features; 0 for identical distributions)."""
    return frechet_of_features(np.stack([features(x) for x in generated]), np.stack([features(x) for x in real]))


def frechet_of_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (rows are samples)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    eps = np.eye(a.shape[1]) * 1e-6
    ca, cb = np.cov(a, rowvar=False) + eps, np.cov(b, rowvar=False) + eps
    covmean = linalg.sqrtm(ca @ cb)
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * covmean))
