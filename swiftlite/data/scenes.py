"""Shapes-world *scenes* for latent diffusion (``sd-tiny``): one or two objects, each with its own
shape, colour, size, position and style, on a named background, at 32 px by default.

A scene is drawn object by object with :func:`swiftlite.data.shapes.render` (the same signed-distance
renderer as the one-object world, so every one-object scene is byte-identical to a ``render`` call);
the second object is laid over the first where it differs from the background::

    image = where(object₂ ≠ background, object₂, object₁)
    mask = mask₁ ∨ mask₂,  edges = edges₁ ∨ edges₂,  depth = max(depth₁, depth₂),  distance = min(d₁, d₂)

Only the styles that change the object and not the background are used (:data:`SCENE_STYLES`:
plain, outline, stripes, dots; at 32 px a stripe is 2 px wide and a dot 2-3 px across, so each style
is visible). The second object sits at least two grid cells away from the first in x or y (they
overlap little), and the caption names everything the picture shows::

    "a large red striped circle at the top left"
    "a small blue dotted square at the bottom right and a large green triangle at the top on a white background"

(the background is named unless it is black, the default). Everything is seeded.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .shapes import (_features, BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, Content, _background, _check_size,
                     _check_subset, render, sample_content)

SCENE_STYLES: tuple[str, ...] = ("plain", "outline", "stripes", "dots")
STYLE_WORDS: dict[str, str] = {"plain": "", "outline": "outlined", "stripes": "striped", "dots": "dotted"}
GRID: dict[str, tuple[int, int]] = {p: (round(x * 3 - 0.5), round(y * 3 - 0.5)) for p, (x, y) in POSITIONS.items()}


def object_phrase(content: Content, style: str) -> str:
    """``"a large red striped circle at the top left"`` (plain objects have no style word)."""
    where = "in the center" if content.position == "center" else f"at the {content.position}"
    words = ["a", content.size, content.colour, STYLE_WORDS[style], content.shape]
    return " ".join(w for w in words if w) + f" {where}"


def scene_caption(objects: Sequence[tuple[Content, str]], background: str) -> str:
    """Every object's phrase joined by "and", then the background unless it is black."""
    text = " and ".join(object_phrase(c, s) for c, s in objects)
    return text if background == "black" else f"{text} on a {background} background"


def far_positions(position: str, positions: Sequence[str]) -> list[str]:
    """Grid cells at least two cells away from ``position`` in x or y (where a second object may go)."""
    cx, cy = GRID[position]
    return [p for p in positions if max(abs(GRID[p][0] - cx), abs(GRID[p][1] - cy)) >= 2]


def render_scene(objects: Sequence[tuple[Content, str]], image_size: int, rng: np.random.Generator | None = None) -> dict:
    """Render objects (content, style) back to front; same keys as :func:`swiftlite.data.shapes.render`."""
    out = None
    for content, style in objects:
        if style not in SCENE_STYLES:
            raise ValueError(f"style={style!r}: scenes use {SCENE_STYLES} (styles that leave the background alone)")
        layer = render(content, style, image_size, rng)
        if out is None:
            out = layer
            continue
        bg = _background(content.background, style, image_size)  # (H, W, 3) the layer's own background
        over = np.any(np.abs(layer["image"].astype(np.float32) - bg) > 0.5, axis=-1)  # object₂ ≠ background
        out = {"image": np.where(over[..., None], layer["image"], out["image"]),
               "mask": out["mask"] | layer["mask"], "edges": out["edges"] | layer["edges"],
               "distance": np.minimum(out["distance"], layer["distance"]),
               "depth": np.maximum(out["depth"], layer["depth"])}
    return out


def scenes_dataset(n: int = 1000, *, image_size: int = 32, seed: int = 0, shapes: Sequence[str] = SHAPES,
                   colours: Sequence[str] = tuple(COLOURS), sizes: Sequence[str] = tuple(SIZES),
                   positions: Sequence[str] = tuple(POSITIONS), styles: Sequence[str] = SCENE_STYLES,
                   backgrounds: Sequence[str] = ("black", "white", "gray"), p_second: float = 0.3,
                   maps: bool = True):
    """``n`` random scenes as a :class:`datasets.Dataset`.

    Columns: ``image`` (H, W, 3) uint8; ``caption`` (:func:`scene_caption`); the first object's
    ``shape``, ``colour``, ``size``, ``position``, ``style`` and the scene's ``background``
    (``ClassLabel`` over the values allowed); ``n_objects`` (1 or 2; the second object, drawn with
    probability ``p_second``, is named in the caption only); with ``maps=True`` ``mask`` / ``edges``
    (H, W) uint8 and ``distance`` / ``depth`` (H, W) float32 of all objects together. A first object in the
    center stays alone (no cell is two cells away from it).
    """
    import datasets

    _check_size(image_size)
    for name, given, allowed in (("styles", styles, SCENE_STYLES), ("shapes", shapes, SHAPES),
                                 ("colours", colours, tuple(COLOURS)), ("sizes", sizes, tuple(SIZES)),
                                 ("positions", positions, tuple(POSITIONS)),
                                 ("backgrounds", backgrounds, tuple(BACKGROUNDS))):
        _check_subset(name, given, allowed)
    if not 0.0 <= p_second <= 1.0:
        raise ValueError(f"p_second={p_second}: must be a probability in [0, 1]")
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("image", "caption", "shape", "colour", "size", "position", "style",
                                             "background", "n_objects")}
    if maps:
        cols.update(mask=[], edges=[], distance=[], depth=[])
    world = dict(shapes=shapes, colours=colours, sizes=sizes)
    for _ in range(n):
        first = sample_content(rng, image_size, positions=positions, backgrounds=backgrounds, **world)
        objects = [(first, styles[rng.integers(len(styles))])]
        second_at = far_positions(first.position, positions)
        if second_at and rng.random() < p_second:
            second = sample_content(rng, image_size, positions=second_at, backgrounds=(first.background,), **world)
            objects.append((second, styles[rng.integers(len(styles))]))
        out = render_scene(objects, image_size, rng)
        cols["image"].append(out["image"])
        cols["caption"].append(scene_caption(objects, first.background))
        for factor in ("shape", "colour", "size", "position", "background"):
            cols[factor].append(getattr(first, factor))
        cols["style"].append(objects[0][1])
        cols["n_objects"].append(len(objects))
        if maps:
            for key in ("mask", "edges", "distance", "depth"):
                cols[key].append(out[key])
    base = _features(image_size, maps, shapes=shapes, colours=colours, sizes=sizes, positions=positions,
                     backgrounds=backgrounds, styles=styles)
    feats = {k: base[k] for k in ("image", "caption", "shape", "colour", "size", "position", "style", "background")}
    feats["n_objects"] = datasets.Value("int8")
    if maps:
        feats.update({k: base[k] for k in ("mask", "edges", "distance", "depth")})
    features = datasets.Features(feats)
    for factor in ("shape", "colour", "size", "position", "style", "background"):
        cols[factor] = [features[factor].str2int(v) for v in cols[factor]]
    return datasets.Dataset.from_dict(cols, features=features)


def scene_words() -> list[str]:
    """Every word a scene caption can use (for building a tokenizer's vocabulary)."""
    words = {"a", "at", "the", "in", "and", "on", "background"} | set(SHAPES) | set(COLOURS) | set(SIZES)
    words |= set(BACKGROUNDS) | {w for w in STYLE_WORDS.values() if w} | {w for p in POSITIONS for w in p.split()}
    return sorted(words)
