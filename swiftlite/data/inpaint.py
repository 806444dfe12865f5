"""A small data engine for promptable inpainting: (scene, mask, subject, local caption) quadruplets.

LAR-Gen (arXiv:2403.19534) trains on quadruplets mined from real photos by large pre-trained models
(a detector and segmenter find an object, a captioner writes a local caption, the object's crop is the
subject). That engine is not public; here the shapes world draws the quadruplet directly, so every
label is exact::

    scene    x   a 32-px scene (:mod:`swiftlite.data.scenes`): the target object, sometimes a second
                 object two grid cells away, on a black or white background
    mask     m   a box around the target object, snapped outwards to the latent grid (4 px), so the
                 8×8 latent mask m↓ is exactly the box
    subject  x_obj  the same object (shape, colour, style) drawn alone, large and centred on black:
                 the "crop" of the subject, without its size or place in the scene
    text     s   the local caption of the object: "a large red striped circle" (no position: the mask
                 says where)

Three tasks share the quadruplets (``task`` column): ``text`` (text only, no subject), ``subject``
(subject only, empty text) and ``text+subject`` (both); ``prompt`` is the text the model reads for
that task and ``has_subject`` says whether it sees the subject.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .scenes import SCENE_STYLES, STYLE_WORDS, far_positions, render_scene
from .shapes import COLOURS, POSITIONS, SHAPES, SIZES, Content, render, sample_content

TASKS: tuple[str, ...] = ("text", "subject", "text+subject")
LATENT_CELL = 4  # pixels per latent cell (sd-tiny: 32 px -> 8 × 8)

__all__ = ["TASKS", "inpaint_dataset", "region_mask", "subject_image", "local_caption", "LATENT_CELL"]


def local_caption(content: Content, style: str) -> str:
    """``"a large red striped circle"``: the object's words without its position."""
    words = ["a", content.size, content.colour, STYLE_WORDS[style], content.shape]
    return " ".join(w for w in words if w)


def region_mask(cx: float, cy: float, radius: float, image_size: int = 32, *, margin: float = 1.0,
                cell: int = LATENT_CELL) -> np.ndarray:
    """(H, W) uint8 box around a disc of ``radius`` at (cx, cy), plus ``margin`` px, snapped outwards to
    multiples of ``cell`` px so it covers whole latent cells."""
    lo_x, hi_x = math.floor((cx - radius - margin) / cell) * cell, math.ceil((cx + radius + margin) / cell) * cell
    lo_y, hi_y = math.floor((cy - radius - margin) / cell) * cell, math.ceil((cy + radius + margin) / cell) * cell
    m = np.zeros((image_size, image_size), np.uint8)
    m[max(lo_y, 0):min(hi_y, image_size), max(lo_x, 0):min(hi_x, image_size)] = 1
    return m


def grid_mask(position: str, size: str = "large", image_size: int = 32) -> np.ndarray:
    """The mask :func:`region_mask` draws for an object of ``size`` at grid cell ``position`` (no jitter)."""
    if position not in POSITIONS:
        raise ValueError(f"position={position!r}: expected one of {list(POSITIONS)}")
    if size not in SIZES:
        raise ValueError(f"size={size!r}: expected one of {list(SIZES)}")
    radius = SIZES[size] * image_size
    gx, gy = POSITIONS[position]
    cx = float(np.clip(gx * image_size, 0.9 * radius, image_size - 0.9 * radius))
    cy = float(np.clip(gy * image_size, 0.9 * radius, image_size - 0.9 * radius))
    return region_mask(cx, cy, radius, image_size)


def subject_image(shape: str, colour: str, style: str, image_size: int = 32) -> np.ndarray:
    """(H, W, 3) uint8: the subject alone, large, centred, on black (what the subject encoder sees)."""
    radius = SIZES["large"] * image_size
    c = image_size / 2
    return render(Content(shape, colour, "large", "center", "black", c, c, radius), style, image_size)["image"]


def inpaint_dataset(n: int = 1000, *, image_size: int = 32, seed: int = 0, shapes: Sequence[str] = SHAPES,
                    colours: Sequence[str] = tuple(COLOURS), sizes: Sequence[str] = ("medium", "large"),
                    styles: Sequence[str] = SCENE_STYLES, backgrounds: Sequence[str] = ("black", "white"),
                    p_second: float = 0.5, tasks: Sequence[str] = TASKS):
    """``n`` quadruplets as a :class:`datasets.Dataset`, the task cycling through ``tasks``.

    Columns: ``image`` (H, W, 3) uint8 scene, ``mask`` (H, W) uint8 box, ``masked_image`` (the scene
    with the box painted mid-gray, value 128 — 0 in [-1, 1], as diffusers' inpainting pipeline does),
    ``subject`` (H, W, 3) uint8, ``caption`` (local caption), ``task``, ``prompt`` (the text for the
    task), ``has_subject`` (0/1), and the target's ``shape``, ``colour``, ``size``, ``style``,
    ``position``, ``background`` as strings.
    """
    import datasets

    bad = [t for t in tasks if t not in TASKS]
    if bad or not tasks:
        raise ValueError(f"tasks={list(tasks)!r}: choose a non-empty subset of {list(TASKS)}")
    bad_styles = [s for s in styles if s not in SCENE_STYLES]
    if bad_styles:
        raise ValueError(f"styles={list(styles)!r}: {bad_styles} are not scene styles; choose from {list(SCENE_STYLES)}")
    if not 0.0 <= p_second <= 1.0:
        raise ValueError(f"p_second={p_second}: must be a probability in [0, 1]")
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("image", "mask", "masked_image", "subject", "caption", "task", "prompt",
                                             "has_subject", "shape", "colour", "size", "style", "position",
                                             "background")}
    for i in range(n):
        target = sample_content(rng, image_size, shapes=shapes, colours=colours, sizes=sizes, backgrounds=backgrounds)
        style = styles[rng.integers(len(styles))]
        objects = [(target, style)]
        second_at = far_positions(target.position, tuple(POSITIONS))
        if second_at and rng.random() < p_second:  # a second object elsewhere: the scene's context
            other = sample_content(rng, image_size, shapes=shapes, colours=colours, sizes=sizes,
                                   positions=second_at, backgrounds=(target.background,))
            objects.insert(0, (other, styles[rng.integers(len(styles))]))  # drawn first, the target on top
        image = render_scene(objects, image_size, rng)["image"]
        mask = region_mask(target.cx, target.cy, target.radius, image_size)
        task = tasks[i % len(tasks)]
        caption = local_caption(target, style)
        cols["image"].append(image)
        cols["mask"].append(mask)
        cols["masked_image"].append(np.where(mask[..., None] == 1, np.uint8(128), image))
        cols["subject"].append(subject_image(target.shape, target.colour, style, image_size))
        cols["caption"].append(caption)
        cols["task"].append(task)
        cols["prompt"].append("" if task == "subject" else caption)
        cols["has_subject"].append(int(task != "text"))
        for factor in ("shape", "colour", "size", "position", "background"):
            cols[factor].append(getattr(target, factor))
        cols["style"].append(style)
    s = image_size
    features = datasets.Features({
        "image": datasets.Array3D((s, s, 3), "uint8"), "mask": datasets.Array2D((s, s), "uint8"),
        "masked_image": datasets.Array3D((s, s, 3), "uint8"), "subject": datasets.Array3D((s, s, 3), "uint8"),
        **{k: datasets.Value("string") for k in ("caption", "task", "prompt", "shape", "colour", "size", "style",
                                                 "position", "background")},
        "has_subject": datasets.Value("int8")})
    return datasets.Dataset.from_dict(cols, features=features)
