"""`FlowDiagram`: a method's data flow as its paper draws it — boxes, operator nodes, arrows.

`tuner_diagram` shows *where* a tuner sits in the module tree; a flow diagram shows *what the
forward pass computes*: the sum node of `x' = OP(x) + T(x)`, a bypass fed by detached probes, the
skip connections a tuner edits, a condition concatenated to the input. Tutorials fill the labels
from the real model (module names, shapes, channel counts), so the picture cannot drift from the
code::

    fd = FlowDiagram("Res-Tuning: x' = OP(x) + T(x)")
    fd.box("x", "x (B, 65, 64)", at=(0, 0))
    fd.box("op", "OP: attention\\n(frozen)", at=(2.5, 1), kind="frozen")
    fd.box("t", "T: Res-Adapter\\n64 → 8 → 64", at=(2.5, -1), kind="tuner")
    fd.node("sum", "+", at=(5, 0))
    fd.box("y", "x'", at=(7, 0))
    fd.arrow("x", "op"); fd.arrow("x", "t"); fd.arrow("op", "sum"); fd.arrow("t", "sum"); fd.arrow("sum", "y")
    fig = fd.draw()

Coordinates are in "box units" (a one-line box is 0.5 high); `draw` sizes the figure from them and
refuses boxes that overlap (a picture with colliding labels is a bug, not a style).
"""
from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FlowDiagram", "BOX_KINDS", "ARROW_STYLES"]

# kind -> (face colour, edge colour, legend text)
BOX_KINDS = {
    "data": ("white", "0.2", "tensor"),
    "frozen": ("0.88", "0.45", "frozen (pretrained)"),
    "tuner": ("#fdd49e", "#d94801", "trainable (tuner)"),
    "condition": ("#c6dbef", "#2171b5", "condition / extra input"),
}
# style -> (line style, colour, legend text)
ARROW_STYLES = {
    "flow": ("-", "0.15", None),
    "detached": ("--", "0.5", "detached (no gradient)"),
    "optional": (":", "#2171b5", "optional / dropped in training"),
}
_NODE_RADIUS = 0.28
_LINE_HEIGHT = 0.32
_CHAR_WIDTH = 0.105


@dataclass
class _Box:
    name: str
    text: str
    x: float
    y: float
    kind: str
    width: float
    height: float
    is_node: bool = False

    def extent(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        return (self.x - self.width / 2, self.y - self.height / 2, self.x + self.width / 2, self.y + self.height / 2)


@dataclass
class _Arrow:
    source: str
    target: str
    label: str
    style: str
    bend: float


@dataclass
class FlowDiagram:
    """A data-flow figure built box by box; `draw()` returns the matplotlib figure."""

    title: str = ""
    boxes: dict[str, _Box] = field(default_factory=dict)
    arrows: list[_Arrow] = field(default_factory=list)

    def _add(self, box: _Box) -> "FlowDiagram":
        if box.name in self.boxes:
            raise ValueError(f"FlowDiagram: name={box.name!r} is used twice; give each box or node its own name")
        self.boxes[box.name] = box
        return self

    def box(self, name: str, text: str, at: tuple[float, float], kind: str = "data",
            width: float | None = None) -> "FlowDiagram":
        """A rectangle holding `text` (lines split on "\\n"; matplotlib's `$...$` maths works)."""
        if kind not in BOX_KINDS:
            raise ValueError(f"FlowDiagram.box(kind={kind!r}): use one of {sorted(BOX_KINDS)}")
        lines = text.split("\n")
        auto = max(0.8, _CHAR_WIDTH * max(len(line) for line in lines) + 0.3)
        return self._add(_Box(name, text, float(at[0]), float(at[1]), kind, width or auto,
                              _LINE_HEIGHT * len(lines) + 0.2))

    def node(self, name: str, op: str, at: tuple[float, float]) -> "FlowDiagram":
        """A small circle for an operator: "+" (sum), "×" (product), "‖" (concatenate), or a short symbol."""
        if len(op) > 3:
            raise ValueError(f"FlowDiagram.node(op={op!r}): an operator node holds a symbol of ≤ 3 characters; "
                             "use box(...) for longer text")
        d = 2 * _NODE_RADIUS
        return self._add(_Box(name, op, float(at[0]), float(at[1]), "data", d, d, is_node=True))

    def arrow(self, source: str, target: str, label: str = "", style: str = "flow",
              bend: float = 0.0) -> "FlowDiagram":
        """An arrow from `source` to `target`; `bend` curves it (e.g. 0.3 for a skip connection)."""
        for field_name, name in (("source", source), ("target", target)):
            if name not in self.boxes:
                raise ValueError(f"FlowDiagram.arrow({field_name}={name!r}): no box or node of that name; "
                                 f"add it first (known: {sorted(self.boxes)})")
        if style not in ARROW_STYLES:
            raise ValueError(f"FlowDiagram.arrow(style={style!r}): use one of {sorted(ARROW_STYLES)}")
        self.arrows.append(_Arrow(source, target, label, style, float(bend)))
        return self

    def overlaps(self) -> list[tuple[str, str]]:
        """Pairs of boxes/nodes whose rectangles intersect (`draw` refuses to draw those)."""
        found = []
        items = list(self.boxes.values())
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                al, ab, ar, at = a.extent()
                bl, bb, br, bt = b.extent()
                if al < br and bl < ar and ab < bt and bb < at:
                    found.append((a.name, b.name))
        return found

    def draw(self, ax=None, scale: float = 1.1):
        """Draw with matplotlib and return the figure (a new one unless `ax` is given)."""
        import matplotlib.pyplot as plt  # matplotlib loads only when a figure is drawn
        from matplotlib.lines import Line2D
        from matplotlib.patches import Circle, FancyBboxPatch, Patch

        if not self.boxes:
            raise ValueError("FlowDiagram.draw(): nothing to draw; add boxes with .box(...) first")
        clashes = self.overlaps()
        if clashes:
            raise ValueError(f"FlowDiagram.draw(): boxes overlap: {clashes}; move them apart with at=(x, y)")
        left = min(b.extent()[0] for b in self.boxes.values()) - 0.3
        bottom = min(b.extent()[1] for b in self.boxes.values()) - 0.3
        right = max(b.extent()[2] for b in self.boxes.values()) + 0.3
        top = max(b.extent()[3] for b in self.boxes.values()) + 0.3
        if ax is None:
            fig, ax = plt.subplots(figsize=(scale * (right - left) + 0.5, scale * (top - bottom) + 1.0))
        fig = ax.figure
        patches = {}
        for b in self.boxes.values():
            face, edge, _ = BOX_KINDS[b.kind]
            if b.is_node:
                patch = Circle((b.x, b.y), _NODE_RADIUS, facecolor="white", edgecolor="0.2", lw=1.2, zorder=3)
                ax.text(b.x, b.y, b.text, ha="center", va="center", fontsize=13, zorder=4)
            else:
                l, bt, _, _ = b.extent()
                patch = FancyBboxPatch((l, bt), b.width, b.height, boxstyle="round,pad=0.02,rounding_size=0.08",
                                       facecolor=face, edgecolor=edge, lw=1.2, zorder=3)
                ax.text(b.x, b.y, b.text, ha="center", va="center", fontsize=9, zorder=4, linespacing=1.2)
            ax.add_patch(patch)
            patches[b.name] = patch
        for a in self.arrows:
            line, colour, _ = ARROW_STYLES[a.style]
            src, dst = self.boxes[a.source], self.boxes[a.target]
            ax.annotate("", xy=(dst.x, dst.y), xytext=(src.x, src.y), zorder=2,
                        arrowprops=dict(arrowstyle="-|>", color=colour, lw=1.3, linestyle=line, shrinkA=0, shrinkB=0,
                                        patchA=patches[a.source], patchB=patches[a.target],
                                        connectionstyle=f"arc3,rad={a.bend}"))
            if a.label:
                mx, my = (src.x + dst.x) / 2, (src.y + dst.y) / 2
                # an arc's midpoint sits `bend` × half the chord away from the straight line, on its left
                dx, dy = dst.x - src.x, dst.y - src.y
                mx, my = mx + a.bend * dy / 2, my - a.bend * dx / 2
                ax.text(mx, my, a.label, ha="center", va="center", fontsize=8, color=colour, zorder=5,
                        bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))
        used_kinds = {b.kind for b in self.boxes.values() if not b.is_node}
        used_styles = {a.style for a in self.arrows}
        handles = [Patch(facecolor=BOX_KINDS[k][0], edgecolor=BOX_KINDS[k][1], label=BOX_KINDS[k][2])
                   for k in BOX_KINDS if k in used_kinds and k != "data"]
        handles += [Line2D([], [], color=ARROW_STYLES[s][1], linestyle=ARROW_STYLES[s][0], label=ARROW_STYLES[s][2])
                    for s in ARROW_STYLES if s in used_styles and ARROW_STYLES[s][2]]
        if handles:
            ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(4, len(handles)),
                      fontsize=8, frameon=False)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        ax.set_aspect("equal")
        ax.axis("off")
        if self.title:
            ax.set_title(self.title, fontsize=11)
        return fig
