"""Where figures go, and saving them there.

`figures_dir()`:
- `$SWIFTLITE_FIGURES` when set (used as is);
- otherwise `<repo>/figures/`, where `<repo>` is the first folder at or above the current directory
  holding `pyproject.toml` and `swiftlite/` (a notebook runs in `tutorials/`, so this is
  `tutorials/../figures`), or `./figures` outside a checkout;
- in quick mode (:func:`swiftlite.settings.quick_mode`: `SWIFTLITE_QUICK=1`, the CI setting) the
  subfolder `quick/` of that, which ignores itself in git (a `.gitignore` holding `*`), so a smoke
  run never overwrites the figures of a full run.

`save_figure` first looks for text that collides (`text_overlaps`): tick labels crowding each other,
an annotation over a title or an axis label, a legend over a data label. Each visible text is taken
as its glyphs' rectangle, rotated with the text (so 45° tick labels that only share their bounding
boxes do not count), and two texts collide when those rectangles overlap by more than `tolerance`
pixels. A collision is a `FigureTextOverlap` warning naming both texts; the figure is saved anyway
(tests/test_notebooks.py turns the warning into an error for the tutorials' quick runs).
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

from ..settings import quick_mode

__all__ = ["figures_dir", "save_figure", "text_overlaps", "FigureTextOverlap"]


class FigureTextOverlap(UserWarning):
    """Two texts of a figure overlap (see `text_overlaps`)."""


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "swiftlite").is_dir():
            return folder
    return None


def figures_dir() -> Path:
    """The folder figures are written to (see the module docstring for the rule)."""
    override = os.environ.get("SWIFTLITE_FIGURES")
    if override:
        return Path(override)
    cwd = Path.cwd().resolve()
    root = _repo_root(cwd)
    folder = (root or cwd) / "figures"
    if quick_mode():
        folder = folder / "quick"
    return folder


def _in_view(axis, tick) -> bool:
    low, high = sorted(axis.get_view_interval())
    span = (high - low) or 1.0
    return low - 1e-9 * span <= tick.get_loc() <= high + 1e-9 * span


def _texts(fig) -> list[tuple[str, object]]:
    """(description, artist) of every text a reader sees; a legend counts as one box (its frame)."""
    out = []

    def add(where: str, text) -> None:
        if text is not None and text.get_visible() and text.get_text().strip():
            out.append((f"{where} {text.get_text().strip()[:40]!r}", text))

    for i, ax in enumerate(fig.axes):
        if not ax.get_visible() or not ax.axison and not ax.texts:
            continue
        where = f"axes {i}" + (f" ({ax.get_title()[:30]!r})" if ax.get_title() else "")
        for title in (ax.title, ax._left_title, ax._right_title):
            add(f"{where} title", title)
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if not ax.axison or not axis.get_visible():
                continue
            add(f"{where} {name}-label", axis.label)
            add(f"{where} {name}-offset", axis.get_offset_text())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if _in_view(axis, tick):
                    for label in (tick.label1, tick.label2):
                        if label.get_visible():
                            add(f"{where} {name}-tick", label)
        for text in ax.texts:
            add(f"{where} text", text)
        legend = ax.get_legend()
        if legend is not None and legend.get_visible():
            out.append((f"{where} legend", legend))
    for text in fig.texts:  # holds the suptitle and supx/ylabels too
        add("suptitle" if text is getattr(fig, "_suptitle", None) else "figure text", text)
    for legend in fig.legends:
        if legend.get_visible():
            out.append(("figure legend", legend))
    return out


def _corners(artist, renderer) -> list[tuple[float, float]]:
    """The rectangle of the artist's glyphs in pixels, rotated with the text (4 corners)."""
    box = artist.get_window_extent(renderer)
    angle = artist.get_rotation() % 180 if hasattr(artist, "get_rotation") and hasattr(artist, "get_text") else 0.0
    if angle in (0.0, 90.0):
        return [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
    artist.set_rotation(0)  # the unrotated size; the rotated box keeps the bounding box's centre
    flat = artist.get_window_extent(renderer)
    artist.set_rotation(angle)
    cx, cy, w, h = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2, flat.width / 2, flat.height / 2
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx + dx * c - dy * s, cy + dx * s + dy * c) for dx, dy in ((-w, -h), (w, -h), (w, h), (-w, h))]


def _overlap(a: list, b: list) -> float:
    """How deep two convex polygons overlap (pixels; <= 0 when apart), by the separating axis test."""
    depth = math.inf
    for poly in (a, b):
        for (x0, y0), (x1, y1) in zip(poly, poly[1:] + poly[:1]):
            nx, ny = y0 - y1, x1 - x0
            norm = math.hypot(nx, ny) or 1.0
            pa = [(x * nx + y * ny) / norm for x, y in a]
            pb = [(x * nx + y * ny) / norm for x, y in b]
            depth = min(depth, min(max(pa), max(pb)) - max(min(pa), min(pb)))
    return depth


def text_overlaps(fig, tolerance: float = 1.0) -> list[tuple[str, str]]:
    """Pairs (description, description) of visible texts of `fig` whose glyph rectangles overlap by
    more than `tolerance` pixels (see the module docstring); a legend is compared as its frame with
    the texts outside it."""
    fig.canvas.draw()  # lays out the texts (and tick labels) as they will be saved
    renderer = fig.canvas.get_renderer()
    items = [(name, artist, _corners(artist, renderer)) for name, artist in _texts(fig)]
    legend_texts = {id(t) for _, artist in _texts(fig) if hasattr(artist, "get_texts") for t in artist.get_texts()}
    pairs = []
    for i, (name_a, art_a, poly_a) in enumerate(items):
        for name_b, art_b, poly_b in items[i + 1:]:
            if id(art_a) in legend_texts or id(art_b) in legend_texts:
                continue
            if _overlap(poly_a, poly_b) > tolerance:
                pairs.append((name_a, name_b))
    return pairs


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write `fig` to `figures_dir()/<name>.png` (atomically) and return the path; warns with
    `FigureTextOverlap` when texts of the figure collide (`text_overlaps`)."""
    if not name or os.sep in name or "/" in name:
        raise ValueError(f"save_figure(name={name!r}): give a plain file name such as '00_tour_loss'")
    collisions = text_overlaps(fig)
    if collisions:
        warnings.warn(FigureTextOverlap(f"figure {name!r}: {len(collisions)} overlapping text(s): " + "; ".join(
            f"{a} over {b}" for a, b in collisions[:8])), stacklevel=2)
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if folder.name == "quick" and not (folder / ".gitignore").exists() and "SWIFTLITE_FIGURES" not in os.environ:
        (folder / ".gitignore").write_text("*\n")  # quick-mode figures never reach git
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    os.replace(tmp, path)
    return path
