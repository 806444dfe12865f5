"""Visual questions about the shapes world: scenes of 1-3 objects, a caption, and one question each.

A scene holds ``k ∈ {1..max_objects}`` objects at distinct grid positions, each with its own shape and
colour (no two objects share both). Objects are rendered one at a time by
:func:`swiftlite.data.shapes.render` and composited with their coverage
``alpha = clip(0.5 - d, 0, 1)`` (``d`` the signed distance in pixels)::

    canvas ← (1 - alpha_i) · canvas + alpha_i · render_i

Question types (``qtype``) and their computed answers:

- ``colour``:   "what colour is the shape at the top left?"  -> "red"
- ``shape``:    "what shape is at the top left?"              -> "circle"
- ``count``:    "how many shapes are there?"                  -> "two"
- ``position``: "where is the red circle?"                    -> "top left"

Every scene also carries a ``caption`` listing its objects ("a red circle at the top left and an
orange square in the center"), the data of stage 1 (aligning image features to the LLM's words).
"""

from __future__ import annotations

import numpy as np

from .shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, Content, _check_size, render

QTYPES: tuple[str, ...] = ("colour", "shape", "count", "position")
NUMBERS = ("zero", "one", "two", "three", "four")


def _where(position: str) -> str:
    return "in the center" if position == "center" else f"at the {position}"


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _question(rng: np.random.Generator, qtype: str, objects: list[Content]) -> tuple[str, str]:
    target = objects[rng.integers(len(objects))]
    if qtype == "colour":
        return f"what colour is the shape {_where(target.position)}?", target.colour
    if qtype == "shape":
        return f"what shape is {_where(target.position)}?", target.shape
    if qtype == "count":
        return "how many shapes are there?", NUMBERS[len(objects)]
    if qtype == "position":
        return f"where is the {target.colour} {target.shape}?", target.position
    raise ValueError(f"unknown question type {qtype!r}; expected one of {QTYPES}")


def vqa_dataset(n: int = 1000, *, image_size: int = 32, seed: int = 0, max_objects: int = 3,
                qtypes: tuple[str, ...] = QTYPES, sizes: tuple[str, ...] = ("small", "medium")):
    """``n`` scenes with one question each, as a :class:`datasets.Dataset`.

    Columns: ``image`` (H, W, 3) uint8, ``caption``, ``question``, ``answer``, ``qtype``
    (a string from ``qtypes``, drawn uniformly), ``n_objects``.
    """
    import datasets  # heavy import, kept local

    _check_size(image_size)
    if not 1 <= max_objects <= 4:
        raise ValueError(f"max_objects={max_objects}: expected 1..4 (the 3×3 grid gets crowded beyond that).")
    bad = [q for q in qtypes if q not in QTYPES]
    if bad or not qtypes:
        raise ValueError(f"qtypes={list(qtypes)!r}: unknown or empty; choose from {list(QTYPES)}")
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("image", "caption", "question", "answer", "qtype", "n_objects")}
    s = image_size
    for _ in range(n):
        k = int(rng.integers(1, max_objects + 1))
        background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
        cells = rng.choice(len(POSITIONS), size=k, replace=False)
        pairs = rng.choice(len(SHAPES) * len(COLOURS), size=k, replace=False)  # distinct (shape, colour)
        objects, canvas = [], None
        for cell, pair in zip(cells, pairs):
            position = list(POSITIONS)[cell]
            shape, colour = SHAPES[pair // len(COLOURS)], list(COLOURS)[pair % len(COLOURS)]
            size = sizes[rng.integers(len(sizes))]
            radius = SIZES[size] * s * rng.uniform(0.92, 1.08)
            gx, gy = POSITIONS[position]
            cx = float(np.clip(gx * s + rng.uniform(-0.03, 0.03) * s, 0.9 * radius, s - 0.9 * radius))
            cy = float(np.clip(gy * s + rng.uniform(-0.03, 0.03) * s, 0.9 * radius, s - 0.9 * radius))
            content = Content(shape, colour, size, position, background, cx, cy, float(radius))
            out = render(content, "plain", s, rng)
            layer = out["image"].astype(np.float32)
            # alpha = clip(0.5 - d, 0, 1), d in pixels
            alpha = np.clip(0.5 - out["distance"] * s, 0.0, 1.0)[..., None]
            canvas = layer if canvas is None else (1 - alpha) * canvas + alpha * layer
            objects.append(content)
        qtype = qtypes[rng.integers(len(qtypes))]
        question, answer = _question(rng, qtype, objects)
        cols["image"].append(np.clip(np.rint(canvas), 0, 255).astype(np.uint8))
        cols["caption"].append(" and ".join(f"{_a(o.colour)} {o.shape} {_where(o.position)}" for o in objects))
        cols["question"].append(question)
        cols["answer"].append(answer)
        cols["qtype"].append(qtype)
        cols["n_objects"].append(k)
    features = datasets.Features({
        "image": datasets.Array3D(shape=(s, s, 3), dtype="uint8"), "caption": datasets.Value("string"),
        "question": datasets.Value("string"), "answer": datasets.Value("string"),
        "qtype": datasets.Value("string"), "n_objects": datasets.Value("int32")})
    return datasets.Dataset.from_dict(cols, features=features)
