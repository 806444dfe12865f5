"""`tuner_diagram`: the block schematic of where tuners attach, drawn with matplotlib from a
:class:`~swiftlite.viz.layout.DiagramLayout` (the boxes, their positions and sites: pure data).

matplotlib is imported inside the functions, so ``import swiftlite.viz`` stays free.
"""
from __future__ import annotations

from typing import Any

from .layout import HEADER, INDENT, DiagramLayout, diagram_layout

__all__ = ["tuner_diagram", "draw_diagram"]

# colours of the schematic (one legend entry each)
_DIAGRAM_STYLE = {
    "frozen": dict(facecolor="#e5e7eb", edgecolor="#9ca3af", linestyle="-", linewidth=0.8),
    "container": dict(facecolor="#ffffff", edgecolor="#9ca3af", linestyle="-", linewidth=0.8),
    "tuner": dict(facecolor="#f3e8ff", edgecolor="#7e22ce", linestyle="-", linewidth=1.6),
    "trainable": dict(facecolor="#bbf7d0", edgecolor="#15803d", linestyle="-", linewidth=1.0),
    "hooked": dict(facecolor="#dbeafe", edgecolor="#1d4ed8", linestyle="--", linewidth=1.6),
    "match": dict(facecolor="#fef3c7", edgecolor="#d97706", linestyle="--", linewidth=1.6),
}
_DIAGRAM_LEGEND = {
    "frozen": "base model module (frozen once a tuner is applied)",
    "container": "block without own weights",
    "tuner": "tuner layer (wraps the original op)",
    "trainable": "tuner weights (trainable)",
    "hooked": "hooked by a tuner (module unchanged)",
    "match": "config would attach here (not applied)",
}


def tuner_diagram(model, config: Any = None, ax=None, max_rows: int = 60):
    """A block schematic of `model` marking where each tuner attaches; returns the matplotlib Figure.

    Drawn from the real model (`named_modules`, folded like `show()`: identical numbered blocks
    become one box `layers.0-11 x12`). Blocks holding a tuner are opened down to it; the rest stay
    closed with their parameter count. Colours (legend under the drawing): frozen modules grey,
    tuner layers purple with the wrapped op (`base_layer`, frozen) and the tuner's own weights
    (trainable, green) inside, modules a tuner only hooks (ResTuning's root, stems and target) blue
    dashed, and for `config` (a SwiftConfig not yet applied) the modules it would attach to in
    orange dashed. At the right of each marked box: which tuner, its role, and the input/output
    width of the wrapped op. Works for a SwiftModel (its adapters) and for a plain model with a
    config; changes nothing. `fig.sites` holds the `Site`s drawn (see `attachment_sites`).

    With `ax` (e.g. one of several subplots) the drawing fits that axes: labels shrink to fit their
    boxes, each tuner's role is written inside its box and the summary heads the legend (the
    caller's title stays); give it room, about 5 in wide for a transformer.
    """
    return draw_diagram(diagram_layout(model, config, compact=ax is not None, max_rows=max_rows), ax)


def draw_diagram(layout: DiagramLayout, ax=None):
    """Draw `layout` on `ax` (compact layouts: a caller's axes) or on a new figure; returns the Figure
    with `.sites`, `.diagram_rows` (the rows' text, style, site and paths) and `.diagram_artists`."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Patch

    rows, sites, box_right, compact = layout.rows, layout.sites, layout.box_right, layout.compact
    total_w, margin, height = layout.width, layout.margin, layout.height
    char_w, row_h = 0.075, 0.3  # inches per character / per row
    legend_rows = 2.6
    own_axes = ax is None
    if own_axes:
        fig, ax = plt.subplots(figsize=(max(6.0, (total_w + margin) * char_w), (height + legend_rows) * row_h + 0.6))
        fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.03)  # x units = characters: keep the axes full width
        unit_x = char_w
        scale = 1.0
    else:  # the caller's axes: shrink the text so each label still fits its box
        box = ax.get_position()
        width_in, height_in = box.width * ax.figure.get_figwidth(), box.height * ax.figure.get_figheight()
        unit_x = width_in / (total_w + margin)
        scale = min(unit_x / char_w, height_in / (height + 1.2) / row_h, 1.3)
    fig = ax.figure
    fs = 7.5 * scale  # font size of the labels (points)
    artists: list[tuple[Any, Any]] = []  # (label, its box) per row
    ax.set_xlim(-margin, total_w)
    ax.set_ylim(height, -1.2)
    ax.axis("off")
    for r in rows:
        x0, x1 = r["x0"], r["x1"]
        top, bottom = r["y"] + 0.08, r["bottom"]
        st = _DIAGRAM_STYLE[r["style"]]
        if r["copies"] > 1:  # a folded run of identical blocks: a stack of boxes
            for k in (2, 1):
                ax.add_patch(FancyBboxPatch((x0 + 0.5 * k, top - 0.12 * k), x1 - x0, bottom - top,
                                            boxstyle="round,pad=0,rounding_size=0.25", facecolor=st["facecolor"],
                                            edgecolor=st["edgecolor"], linewidth=0.6, zorder=1.5 + r["depth"]))
        patch = ax.add_patch(FancyBboxPatch((x0, top), x1 - x0, bottom - top, boxstyle="round,pad=0,rounding_size=0.25",
                                            zorder=2 + r["depth"], **st))

        weight = "bold" if r["style"] in ("tuner", "hooked", "match") else "normal"
        label = ax.text(x0 + 0.8, r["y"] + 0.5, r["text"], va="center", ha="left", fontsize=fs, family="monospace",
                        fontweight=weight, zorder=3 + r["depth"], clip_on=False)
        artists.append((label, patch))
        if r["site"] and compact:
            ax.text(x0 + 0.8, r["y"] + 1.2, r["site_line"], va="center", ha="left", fontsize=fs * 0.87,
                    family="monospace", color=st["edgecolor"], fontweight="bold", zorder=3 + r["depth"])
        elif r["site"]:
            ax.annotate("", xy=(x1, r["y"] + 0.5), xytext=(box_right + 1.5, r["y"] + 0.5),
                        arrowprops=dict(arrowstyle="-", color=st["edgecolor"], linewidth=0.8, linestyle=":"))
            ax.text(box_right + 1.8, r["y"] + 0.5 - (0.22 if r["io"] else 0), r["site"], va="center", ha="left",
                    fontsize=fs, family="monospace", color=st["edgecolor"], fontweight="bold")
            if r["io"]:
                ax.text(box_right + 1.8, r["y"] + 0.72, r["io"], va="center", ha="left", fontsize=fs * 0.87,
                        family="monospace", color="#374151")
    for arrow in layout.arrows:  # ResTuning's bypass: feature reads and the write back, in the left margin
        src, dst, into_side = rows[arrow["src"]], rows[arrow["dst"]], arrow["into_side"]
        x_lane = -1.2 * arrow["lane"]  # each arrow runs down its own lane in the left margin
        arm_a = (src["depth"] * INDENT - x_lane) * unit_x * 72  # points
        arm_b = (dst["depth"] * INDENT - x_lane) * unit_x * 72
        ax.annotate("", xy=(dst["depth"] * INDENT, dst["y"] + 0.5), xytext=(src["depth"] * INDENT, src["y"] + 0.5),
                    zorder=20, annotation_clip=False,
                    arrowprops=dict(arrowstyle="-|>", color=_DIAGRAM_STYLE["hooked" if into_side else "tuner"]["edgecolor"],
                                    linewidth=1.0, shrinkA=0, shrinkB=0,
                                    connectionstyle=f"arc,angleA=180,armA={arm_a:.1f},angleB=180,armB={arm_b:.1f},rad=3"))
    if not compact:
        ax.text(box_right + 1.8, -0.6, HEADER, fontsize=fs * 0.93, family="monospace", color="#374151", va="center")
    used = [k for k in _DIAGRAM_STYLE if any(r["style"] == k for r in rows)]
    handles = [Patch(label=_DIAGRAM_LEGEND[k], **{a: v for a, v in _DIAGRAM_STYLE[k].items()}) for k in used]
    if layout.arrows:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color=_DIAGRAM_STYLE["hooked"]["edgecolor"], marker=">", markersize=4,
                              label="feature read by the tuner / written back"))
    if any(r["copies"] > 1 for r in rows):
        handles.append(Patch(facecolor="#ffffff", edgecolor="#9ca3af", label="stacked box 'x N': N identical blocks (counts are per block)"))
    title = layout.title
    if own_axes:
        ax.set_title(title, fontsize=9, loc="left")
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, 0), ncol=2, fontsize=7, frameon=False)
    else:  # the caller titles its axes: the summary heads the legend instead
        legend = ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, 0), ncol=1, fontsize=6.5,
                           frameon=False, title=title, title_fontsize=7)
        legend._legend_box.align = "left"
    fig.sites = ax.sites = sites  # (the last diagram drawn on a figure holding several)
    fig.diagram_rows = ax.diagram_rows = [{k: r[k] for k in ("depth", "text", "style", "site", "io", "paths")} for r in rows]
    fig.diagram_artists = ax.diagram_artists = artists
    return fig
