"""The shapes world: procedural images with labels, captions, masks, edges and depth.

Every image holds one object described by five factors

    shape × colour × size × position × background

rendered in one of several *styles* (``plain``, ``outline``, ``stripes``, ``dots``, ``pastel``,
``ink``). The renderer works on signed distance functions (SDFs): for a pixel centre ``p`` and
an object of radius ``r`` centred at ``c``,

    d(p) = sdf_shape((p - c) / r) · r          (pixels; d < 0 inside)
    alpha(p) = clip(0.5 - d(p), 0, 1)          (anti-aliased coverage)
    image = (1 - alpha) · background + alpha · fill_style(p)

so the same ``d`` also gives the object mask (``d < 0``), an edge map (``|d| < 0.75``), a
signed-distance map (``d / image_size``) and a depth-like map (a ground plane plus a dome on
the object; larger = closer, like a disparity map). Because content and style are separate
arguments, the same content can be rendered plain and stylized (:func:`style_pairs`).

Everything is seeded: the same arguments give byte-identical datasets on every machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (50, 80, 230),
    "yellow": (235, 205, 35),
    "purple": (150, 60, 200),
    "orange": (245, 135, 25),
}
SIZES: dict[str, float] = {"small": 0.13, "medium": 0.19, "large": 0.26}  # radius / image_size
# 3 × 3 grid; (column, row) of the cell centre in units of image_size
POSITIONS: dict[str, tuple[float, float]] = {
    "top left": (1 / 6, 1 / 6), "top": (3 / 6, 1 / 6), "top right": (5 / 6, 1 / 6),
    "left": (1 / 6, 3 / 6), "center": (3 / 6, 3 / 6), "right": (5 / 6, 3 / 6),
    "bottom left": (1 / 6, 5 / 6), "bottom": (3 / 6, 5 / 6), "bottom right": (5 / 6, 5 / 6),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "black": (18, 18, 24),
    "white": (238, 238, 232),
    "gray": (120, 120, 124),
    "gradient": (0, 0, 0),  # vertical navy-to-teal ramp, built in _background()
}
STYLES: tuple[str, ...] = ("plain", "outline", "stripes", "dots", "pastel", "ink")
STYLE_INSTRUCTIONS: dict[str, str] = {
    "plain": "render it as a flat solid shape",
    "outline": "draw only the outline",
    "stripes": "fill it with diagonal stripes",
    "dots": "fill it with polka dots",
    "pastel": "use a soft pastel palette",
    "ink": "make it look like an ink drawing on paper",
}
PAPER = np.array((244, 238, 222), dtype=np.float32)  # background of the "ink" style


# ----------------------------------------------------------------------------------------------
# signed distance functions on the unit scale (object radius 1); q has shape (..., 2) = (x, y)
# ----------------------------------------------------------------------------------------------
def _sdf_box(q: np.ndarray, half: tuple[float, float]) -> np.ndarray:
    # d = |max(|q| - b, 0)| + min(max(dx, dy), 0)   (Quilez, "2D distance functions")
    d = np.abs(q) - np.asarray(half, dtype=np.float32)
    outside = np.linalg.norm(np.maximum(d, 0.0), axis=-1)
    inside = np.minimum(d.max(axis=-1), 0.0)
    return outside + inside


def _sdf_triangle(q: np.ndarray) -> np.ndarray:
    # equilateral triangle pointing up (image y grows downwards, so flip y), circumradius 1
    x, y = np.abs(q[..., 0]), -q[..., 1] + 0.25
    k = np.sqrt(3.0)
    x, y = x - 1.0 * 0.866, y + 0.866 / k
    flip = x + k * y > 0
    x, y = np.where(flip, (x - k * y) / 2, x), np.where(flip, (-k * x - y) / 2, y)
    x = x - np.clip(x, -2 * 0.866, 0.0)
    return -np.sqrt(x * x + y * y) * np.sign(y)


def _sdf(shape: str, q: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return np.linalg.norm(q, axis=-1) - 1.0
    if shape == "square":
        return _sdf_box(q, (0.82, 0.82))
    if shape == "triangle":
        return _sdf_triangle(q * 0.95)
    if shape == "diamond":
        # rhombus |x| + |y| = 1, divided by sqrt(2) to be a distance
        return (np.abs(q[..., 0]) + np.abs(q[..., 1]) - 1.05) / np.sqrt(2.0)
    if shape == "cross":
        return np.minimum(_sdf_box(q, (1.0, 0.32)), _sdf_box(q, (0.32, 1.0)))
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def _where(position: str) -> str:
    """The captions' wording of a grid position: "in the center", "at the top left"."""
    return "in the center" if position == "center" else f"at the {position}"


@dataclass(frozen=True)
class Content:
    """What is in the picture (everything except the style)."""

    shape: str
    colour: str
    size: str
    position: str
    background: str
    cx: float  # object centre, pixels
    cy: float
    radius: float  # pixels

    @property
    def caption(self) -> str:
        """Short caption, e.g. ``"a red circle at the top left"``."""
        return f"a {self.colour} {self.shape} {_where(self.position)}"

    def long_caption(self, style: str) -> str:
        """Caption with every factor, e.g. ``"a small red striped circle at the top on a white background"``."""
        adjective = {"plain": "", "outline": "outlined ", "stripes": "striped ", "dots": "dotted ",
                     "pastel": "pastel ", "ink": "inked "}[style]
        bg = "paper" if style == "ink" else f"a {self.background}"
        return f"a {self.size} {adjective}{self.colour} {self.shape} {_where(self.position)} on {bg} background"


def sample_content(rng: np.random.Generator, image_size: int, *, shapes: Sequence[str] = SHAPES,
                   colours: Sequence[str] = tuple(COLOURS), sizes: Sequence[str] = tuple(SIZES),
                   positions: Sequence[str] = tuple(POSITIONS),
                   backgrounds: Sequence[str] = tuple(BACKGROUNDS)) -> Content:
    """Draw one random :class:`Content` (uniform over every factor, small jitter in place and size)."""
    shape = shapes[rng.integers(len(shapes))]
    colour = colours[rng.integers(len(colours))]
    size = sizes[rng.integers(len(sizes))]
    position = positions[rng.integers(len(positions))]
    background = backgrounds[rng.integers(len(backgrounds))]
    radius = SIZES[size] * image_size * rng.uniform(0.92, 1.08)
    gx, gy = POSITIONS[position]
    jitter = rng.uniform(-0.04, 0.04, size=2) * image_size
    # keep the object (mostly) inside the frame
    lo, hi = 0.9 * radius, image_size - 0.9 * radius
    cx = float(np.clip(gx * image_size + jitter[0], lo, hi))
    cy = float(np.clip(gy * image_size + jitter[1], lo, hi))
    return Content(shape, colour, size, position, background, cx, cy, float(radius))


def world_prompts(shapes: Sequence[str], colours: Sequence[str], per_prompt: int = 1,
                  seed: int = 0) -> tuple[list[str], list[str], list[str]]:
    """Every (shape, colour) prompt ``per_prompt`` times, each at a random grid position:
    ``(prompts, shapes, colours)`` in the captions' own wording ("a red circle at the top left")."""
    rng = np.random.default_rng(seed)
    prompts, wanted_shapes, wanted_colours = [], [], []
    for shape in shapes:
        for colour in colours:
            for _ in range(per_prompt):
                position = list(POSITIONS)[rng.integers(len(POSITIONS))]
                prompts.append(f"a {colour} {shape} {_where(position)}")
                wanted_shapes.append(shape)
                wanted_colours.append(colour)
    return prompts, wanted_shapes, wanted_colours


def _background(name: str, style: str, image_size: int) -> np.ndarray:
    """(H, W, 3) float32 background in 0..255."""
    if style == "ink":
        return np.broadcast_to(PAPER, (image_size, image_size, 3)).copy()
    if name == "gradient":
        t = np.linspace(0.0, 1.0, image_size, dtype=np.float32)[:, None, None]  # (H, 1, 1)
        top, bottom = np.array((20, 30, 80), np.float32), np.array((40, 150, 150), np.float32)
        bg = np.broadcast_to((1 - t) * top + t * bottom, (image_size, image_size, 3)).copy()
    else:
        bg = np.broadcast_to(np.array(BACKGROUNDS[name], np.float32), (image_size, image_size, 3)).copy()
    if style == "pastel":
        bg = 0.5 * bg + 0.5 * 255.0
    return bg


def render(content: Content, style: str, image_size: int, rng: np.random.Generator | None = None) -> dict:
    """Render ``content`` in ``style``.

    Returns a dict of numpy arrays: ``image`` (H, W, 3) uint8, ``mask`` (H, W) uint8 in {0, 1},
    ``edges`` (H, W) uint8 in {0, 1}, ``distance`` (H, W) float32 signed distance / image_size
    (negative inside) and ``depth`` (H, W) float32 in [0, 1], larger = closer.
    ``rng`` only drives the texture of the ``ink`` style (paper grain, rough strokes).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    s = image_size
    rng = rng if rng is not None else np.random.default_rng(0)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5  # pixel centres, (H, W) each
    q = np.stack([(xs - content.cx) / content.radius, (ys - content.cy) / content.radius], axis=-1)
    d = _sdf(content.shape, q).astype(np.float32) * content.radius  # (H, W) pixels
    colour = np.array(COLOURS[content.colour], np.float32)
    bg = _background(content.background, style, s)

    if style == "ink":
        d_draw = d + rng.normal(0.0, 0.35, size=d.shape).astype(np.float32)  # rough stroke edge
    else:
        d_draw = d
    alpha = np.clip(0.5 - d_draw, 0.0, 1.0)[..., None]  # (H, W, 1) coverage
    fill = np.broadcast_to(colour, (s, s, 3)).copy()
    period = max(3.0, s / 8)
    if style == "outline":
        width = max(1.0, 0.07 * s)
        alpha = np.clip(0.5 - (np.abs(d) - width / 2), 0.0, 1.0)[..., None]
    elif style == "stripes":
        on = (((xs + ys) / period) % 1.0) < 0.5  # diagonal bands
        fill = np.where(on[..., None], colour, 0.3 * colour)
    elif style == "dots":
        fx, fy = (xs / period) % 1.0 - 0.5, (ys / period) % 1.0 - 0.5
        on = fx * fx + fy * fy < 0.09  # dot radius 0.3 · period
        fill = np.where(on[..., None], colour, 0.3 * colour + 0.7 * 235.0)
    elif style == "pastel":
        fill = 0.45 * fill + 0.55 * 255.0
    elif style == "ink":
        ink = 0.4 * colour + 0.6 * np.array((25, 25, 45), np.float32)  # dark, colour-tinted ink
        fill = ink * rng.uniform(0.8, 1.15, size=(s, s, 1)).astype(np.float32)
    image = (1 - alpha) * bg + alpha * fill
    if style == "ink":
        image = image + rng.normal(0.0, 6.0, size=image.shape).astype(np.float32)  # paper grain

    mask = (d < 0).astype(np.uint8)
    edges = (np.abs(d) < 0.75).astype(np.uint8)
    # depth-like map: ground plane (far at the top, near at the bottom) + a dome over the object
    ground = 0.2 + 0.5 * (ys / s)
    base = 0.2 + 0.5 * min((content.cy + content.radius) / s, 1.0)  # where the object touches the ground
    dome = 0.3 * np.sqrt(np.clip(-d / content.radius, 0.0, 1.0))
    depth = np.where(mask > 0, base + dome, ground).astype(np.float32)
    return {
        "image": np.clip(np.rint(image), 0, 255).astype(np.uint8),
        "mask": mask,
        "edges": edges,
        "distance": (d / s).astype(np.float32),
        "depth": np.clip(depth, 0.0, 1.0),
    }


def _check_size(image_size: int) -> None:
    if not 16 <= image_size <= 64:
        raise ValueError(f"image_size={image_size} is outside the supported range 16..64 px; "
                         "pick a value in that range (e.g. 16 or 32).")


def _check_subset(name: str, given: Sequence[str], allowed: Sequence[str]) -> None:
    unknown = [g for g in given if g not in allowed]
    if unknown or not given:
        raise ValueError(f"{name}={list(given)!r}: unknown or empty; choose from {list(allowed)}")


def shapes_dataset(n: int = 1000, *, image_size: int = 32, seed: int = 0,
                   styles: Sequence[str] = ("plain",), shapes: Sequence[str] = SHAPES,
                   colours: Sequence[str] = tuple(COLOURS), sizes: Sequence[str] = tuple(SIZES),
                   positions: Sequence[str] = tuple(POSITIONS),
                   backgrounds: Sequence[str] = tuple(BACKGROUNDS), maps: bool = True):
    """``n`` random shapes-world records as a :class:`datasets.Dataset`.

    Columns: ``image`` (H, W, 3) uint8; ``shape``, ``colour``, ``size``, ``position``,
    ``background``, ``style`` (``ClassLabel`` over the factor values you allowed, so
    ``ds.features["shape"].names`` maps ids to words); ``caption`` ("a red circle at the top left");
    ``long_caption`` (every factor); ``bbox`` [x0, y0, x1, y1] in pixels; and, with ``maps=True``,
    ``mask`` / ``edges`` (H, W) uint8 in {0, 1}, ``distance`` and ``depth`` (H, W) float32.
    The style of each record is drawn uniformly from ``styles``.
    """
    import datasets  # heavy import, kept local

    _check_size(image_size)
    for name, given, allowed in (("styles", styles, STYLES), ("shapes", shapes, SHAPES),
                                 ("colours", colours, tuple(COLOURS)), ("sizes", sizes, tuple(SIZES)),
                                 ("positions", positions, tuple(POSITIONS)),
                                 ("backgrounds", backgrounds, tuple(BACKGROUNDS))):
        _check_subset(name, given, allowed)
    rng = np.random.default_rng(seed)
    columns: dict[str, list] = {k: [] for k in ("image", "shape", "colour", "size", "position",
                                                "background", "style", "caption", "long_caption", "bbox")}
    if maps:
        columns.update(mask=[], edges=[], distance=[], depth=[])
    for _ in range(n):
        content = sample_content(rng, image_size, shapes=shapes, colours=colours, sizes=sizes,
                                 positions=positions, backgrounds=backgrounds)
        style = styles[rng.integers(len(styles))]
        out = render(content, style, image_size, rng)
        columns["image"].append(out["image"])
        for factor in ("shape", "colour", "size", "position", "background"):
            columns[factor].append(getattr(content, factor))
        columns["style"].append(style)
        columns["caption"].append(content.caption)
        columns["long_caption"].append(content.long_caption(style))
        r = content.radius
        columns["bbox"].append([content.cx - r, content.cy - r, content.cx + r, content.cy + r])
        if maps:
            for key in ("mask", "edges", "distance", "depth"):
                columns[key].append(out[key])
    features = _features(image_size, maps, shapes=shapes, colours=colours, sizes=sizes,
                         positions=positions, backgrounds=backgrounds, styles=styles)
    for factor in ("shape", "colour", "size", "position", "background", "style"):
        columns[factor] = [features[factor].str2int(v) for v in columns[factor]]
    return datasets.Dataset.from_dict(columns, features=features)


def _features(image_size: int, maps: bool, *, shapes: Sequence[str], colours: Sequence[str],
              sizes: Sequence[str], positions: Sequence[str], backgrounds: Sequence[str],
              styles: Sequence[str]):
    import datasets

    s = image_size
    label = lambda values: datasets.ClassLabel(names=list(values))  # noqa: E731
    feats = {
        "image": datasets.Array3D(shape=(s, s, 3), dtype="uint8"),
        "shape": label(shapes), "colour": label(colours), "size": label(sizes),
        "position": label(positions), "background": label(backgrounds), "style": label(styles),
        "caption": datasets.Value("string"),
        "long_caption": datasets.Value("string"),
        "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
    }
    if maps:
        feats.update(mask=datasets.Array2D(shape=(s, s), dtype="uint8"),
                     edges=datasets.Array2D(shape=(s, s), dtype="uint8"),
                     distance=datasets.Array2D(shape=(s, s), dtype="float32"),
                     depth=datasets.Array2D(shape=(s, s), dtype="float32"))
    return datasets.Features(feats)


def style_pairs(n: int = 500, *, styles: Sequence[str] = STYLES[1:], image_size: int = 32,
                seed: int = 0, shapes: Sequence[str] = SHAPES, colours: Sequence[str] = tuple(COLOURS),
                backgrounds: Sequence[str] = tuple(BACKGROUNDS), maps: bool = False):
    """The same content rendered ``plain`` (``source``) and in a target style (``target``).

    Columns: ``source``, ``target`` (H, W, 3) uint8, ``style`` (ClassLabel over ``styles``),
    ``instruction`` (e.g. "fill it with diagonal stripes"), ``caption``, ``shape``, ``colour``;
    with ``maps=True`` also ``mask`` and ``edges`` of the shared content.
    """
    import datasets

    _check_size(image_size)
    _check_subset("styles", styles, STYLES)
    _check_subset("shapes", shapes, SHAPES)
    _check_subset("colours", colours, tuple(COLOURS))
    _check_subset("backgrounds", backgrounds, tuple(BACKGROUNDS))
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("source", "target", "style", "instruction", "caption",
                                             "shape", "colour")}
    if maps:
        cols.update(mask=[], edges=[])
    for _ in range(n):
        content = sample_content(rng, image_size, shapes=shapes, colours=colours, backgrounds=backgrounds)
        style = styles[rng.integers(len(styles))]
        plain = render(content, "plain", image_size, rng)
        cols["source"].append(plain["image"])
        cols["target"].append(render(content, style, image_size, rng)["image"])
        cols["style"].append(style)
        cols["instruction"].append(STYLE_INSTRUCTIONS[style])
        cols["caption"].append(content.caption)
        cols["shape"].append(content.shape)
        cols["colour"].append(content.colour)
        if maps:
            cols["mask"].append(plain["mask"])
            cols["edges"].append(plain["edges"])
    s = image_size
    feats = {"source": datasets.Array3D(shape=(s, s, 3), dtype="uint8"),
             "target": datasets.Array3D(shape=(s, s, 3), dtype="uint8"),
             "style": datasets.ClassLabel(names=list(styles)),
             "instruction": datasets.Value("string"), "caption": datasets.Value("string"),
             "shape": datasets.ClassLabel(names=list(shapes)),
             "colour": datasets.ClassLabel(names=list(colours))}
    if maps:
        feats.update(mask=datasets.Array2D(shape=(s, s), dtype="uint8"),
                     edges=datasets.Array2D(shape=(s, s), dtype="uint8"))
    features = datasets.Features(feats)
    for key in ("style", "shape", "colour"):
        cols[key] = [features[key].str2int(v) for v in cols[key]]
    return datasets.Dataset.from_dict(cols, features=features)


def to_pixel_values(images, *, normalize: str = "symmetric"):
    """uint8 images (B, H, W, 3) or (H, W, 3) -> float tensor (B, 3, H, W).

    ``normalize="symmetric"`` maps 0..255 to [-1, 1] (diffusion and our ViT); ``"unit"`` to [0, 1].
    """
    import torch

    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x[None]
    x = x.permute(0, 3, 1, 2).float() / 255.0  # (B, H, W, 3) -> (B, 3, H, W)
    if normalize == "symmetric":
        return x * 2.0 - 1.0
    if normalize == "unit":
        return x
    raise ValueError(f"normalize={normalize!r}; expected 'symmetric' or 'unit'")


def to_uint8_images(pixel_values) -> np.ndarray:
    """Inverse of :func:`to_pixel_values` (symmetric): (B, 3, H, W) in [-1, 1] -> (B, H, W, 3) uint8."""
    import torch

    x = torch.as_tensor(pixel_values).detach().float().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)  # (B, H, W, 3)
    return x.cpu().numpy()
