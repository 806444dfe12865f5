"""Where tuners attach, as pure data: the sites (`attachment_sites`) and the boxes of the block
schematic (`diagram_layout`: rows with text, style, position and the tuner sites they carry).
Nothing here draws; :mod:`swiftlite.viz.diagram` turns a :class:`DiagramLayout` into a matplotlib figure.

Units: x in characters, y in rows (downwards), as the drawing places them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch.nn as nn

from .. import SwiftModel
from ..core.config import SwiftConfig, get_tuner
from ..api.inspect import module_tree, tuner_state
from ..core.layer import TunerLayer
from ..core.modules import innermost_base_layer
from ..core.tuner import feature_width

__all__ = ["Site", "attachment_sites", "DiagramLayout", "diagram_layout", "STYLES"]

# box styles of the schematic, one legend entry each (colours: swiftlite.viz.diagram)
STYLES = ("frozen", "container", "tuner", "trainable", "hooked", "match")
INDENT = 2.0  # characters per depth level
HEADER = "where the tuner attaches  |  wrapped op: input -> output width"


@dataclass
class Site:
    """One place a tuner attaches (or would attach), for `attachment_sites` / `tuner_diagram`."""

    path: str  # module path relative to the base model
    tuner: str  # "LoRA", "ResTuning", ... (the config class name without "Config")
    adapter: str | None  # adapter name in a SwiftModel; None for a config not yet applied
    role: str  # "wraps" | "added" | "would attach" | ResTuning: "root (output)", "stem 2 (output)", "target (input)"
    state: str | None = None  # "active" | "inactive" | "merged" for an applied adapter

    def label(self) -> str:
        who = self.tuner if self.adapter is None else f"{self.tuner}[{self.adapter}]"
        state = f", {self.state}" if self.state and self.state != "active" else ""
        return f"{who}: {self.role}{state}"


def _tuner_name(config: Any) -> str:
    name = type(config).__name__
    return name[: -len("Config")] if name.endswith("Config") and len(name) > len("Config") else name


def _roles(base, config) -> dict[str, str]:
    """{path: role} of the modules `config` touches in `base` (reads only)."""
    tuner = get_tuner(config.swift_type)
    locate = getattr(tuner, "locate", None)
    if callable(locate):  # tuners attaching by hooks around a root, stems and a target (ResTuning)
        root, stems, target = locate(base, config)
        roles: dict[str, list[str]] = {}
        if root is not None:
            roles.setdefault(root, []).append(f"root ({getattr(config, 'root_modules_hook', 'output')})")
        else:
            roles.setdefault(stems[0], []).append("root (input)")
        for i, stem in enumerate(stems, start=1):
            roles.setdefault(stem, []).append(f"stem {i} ({getattr(config, 'stem_modules_hook', 'output')})")
        hook = getattr(config, "target_modules_hook", "input")
        roles.setdefault(target, []).append(f"target ({hook} replaced)")
        return {k: " + ".join(v) for k, v in roles.items()}
    return dict.fromkeys(config.matched_modules(base), "would attach")


def attachment_sites(model, config: Any = None) -> list[Site]:
    """Where the tuners of `model` attach, relative to its base model (reads only, changes nothing).

    For a SwiftModel: every tuner layer (a module wrapping the original op, or a module the tuner
    added) with each adapter's state, plus the modules a hook-based tuner (ResTuning) hooks.
    With `config` (a SwiftConfig not yet applied, or a dict {adapter name: config}): the modules
    `config.matched_modules` selects (for ResTuning: its root, stems and target, each with its role).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"tuner_diagram(model): expected an nn.Module, got {type(model).__name__}")
    sites: list[Site] = []
    base = model
    if isinstance(model, SwiftModel):
        base = model.base_model
        configs = model.adapters
        layers = {path: m for path, m in base.named_modules() if isinstance(m, TunerLayer)}
        for path, layer in layers.items():
            role = "wraps" if layer.base_layer is not None else "added"
            for adapter, state in tuner_state(layer).items():
                tuner = _tuner_name(configs[adapter]) if adapter in configs else type(layer).__name__
                sites.append(Site(path, tuner, adapter, role, state))
        inside = tuple(f"{p}." for p in layers)
        for adapter, cfg in configs.items():
            try:
                roles = _roles(base, cfg)
            except ValueError:  # some tuners' targets no longer match once injected: their layers show them
                continue
            for path, role in roles.items():
                if path in layers or path.startswith(inside):
                    continue  # shown as the tuner layer itself
                state = "active" if adapter in model.active_adapters else "inactive"
                sites.append(Site(path, _tuner_name(cfg), adapter, role, state))
    if config is not None:
        configs = config.values() if isinstance(config, Mapping) else [config]  # {adapter name: config} too
        for cfg in configs:
            if not isinstance(cfg, SwiftConfig):
                raise TypeError(f"tuner_diagram(config=...): expected a SwiftConfig or a dict of them, "
                                f"got {type(cfg).__name__}")
        for cfg in configs:
            for path, role in _roles(base, cfg).items():
                sites.append(Site(path, _tuner_name(cfg), None, role))
    return sites


def _io_text(module) -> str:
    """'in 32 -> out 32' for the op a site wraps (features, channels or token ids), '' if unknown."""
    base = innermost_base_layer(module)
    if isinstance(base, nn.Embedding):
        return f"ids < {base.num_embeddings} -> out {base.embedding_dim}"
    if isinstance(base, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return f"in {base.in_channels} ch -> out {base.out_channels} ch"
    if isinstance(base, nn.Linear):
        return f"in {base.in_features} -> out {base.out_features}"
    conv1d = type(base).__name__ == "Conv1D" and hasattr(base, "nf")  # transformers' GPT-2 Conv1D
    if conv1d:
        return f"in {base.weight.shape[0]} -> out {base.nf}"
    try:
        found_in, found_out = feature_width(base, "in"), feature_width(base, "out")
    except Exception:  # noqa: BLE001
        return ""
    if found_in is None and found_out is None:
        return ""
    return f"in {found_in[0] if found_in else '?'} -> out {found_out[0] if found_out else '?'}"


def _status_word(total: int, trainable: int, applied: bool) -> str:
    if not applied:
        return ""
    return " trainable" if trainable == total else " frozen" if not trainable else f" ({trainable:,} trainable)"


def _numel(shape) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def _subtree_params(node) -> tuple[int, int]:
    """(parameters, trainable parameters) below and at `node` (one copy of `node` itself; a folded child
    below it counts `child.copies` times, since it stands for that many sibling blocks)."""
    own = [p for p in node.params if p.tied_to is None]
    total = sum(_numel(p.shape) for p in own)
    trainable = sum(_numel(p.shape) for p in own if p.trainable)
    for child in node.children:
        child_total, child_trainable = _subtree_params(child)
        total, trainable = total + child_total * child.copies, trainable + child_trainable * child.copies
    return total, trainable


@dataclass
class DiagramLayout:
    """The schematic as data. Each row is one box: ``depth``, ``text`` (name, class, parameters),
    ``style`` (one of :data:`STYLES`), ``site`` (which tuner attaches, its role) and ``io`` (the wrapped
    op's widths), ``opened`` (children shown below it), ``copies`` (a folded run of identical blocks),
    ``paths`` (module paths), ``sites`` (the `Site`s at those paths), and its position ``x0``, ``x1``,
    ``y`` (label line) and ``bottom``; compact layouts add ``site_line`` (the site under the label)."""

    rows: list[dict[str, Any]]
    sites: list[Site]
    title: str  # e.g. "LlamaForCausalLM with LoRA: trainable 1,024 of 20,640 parameters (4.96 %)"
    compact: bool  # sites written inside the boxes (for a caller's axes) instead of a right-hand column
    box_right: float  # x where the outermost box ends; the site column starts after it
    width: float  # x extent, site column included
    margin: float  # room left of x = 0 for the arrows' lanes
    height: float  # y extent
    arrows: list[dict[str, Any]] = field(default_factory=list)  # {"src", "dst": row index, "lane", "into_side"}


def diagram_layout(model, config: Any = None, *, compact: bool = False, max_rows: int = 60) -> DiagramLayout:
    """The boxes of the block schematic of `model` (a SwiftModel, or a plain model with `config`),
    folded like `show()`: blocks holding a tuner are opened down to it, the rest stay closed with their
    parameter count; a run of 3+ untouched siblings becomes one summary box. When that is taller than
    `max_rows`, tuner layers are closed, then blocks from the deepest level up. Reads only."""
    sites = attachment_sites(model, config)
    applied = isinstance(model, SwiftModel)  # a plain model is not frozen yet: no trainable/frozen words
    base = model.base_model if applied else model
    by_path: dict[str, list[Site]] = {}
    for site in sites:
        by_path.setdefault(site.path, []).append(site)
    root = module_tree(base, set(by_path))
    builder = _Rows(base, by_path, applied, compact)
    depth_of_tree = max(len(p.split(".")) for n in root.walk() for p in n.paths if p) if list(base.children()) else 1
    for open_tuners, max_open_depth in [(True, None), (False, None)] + [(False, d) for d in range(depth_of_tree, 0, -1)]:
        rows = builder.rows(root, open_tuners, max_open_depth)
        if len(rows) <= max_rows:
            break

    if compact:
        for r in rows:
            r["site_line"] = "  ".join(t for t in (r["site"], r["io"]) if t)
    left_w = max(r["depth"] * INDENT + max(len(r["text"]), len(r.get("site_line", "")) * 0.87) + 2 for r in rows)
    box_right = left_w + max(r["depth"] for r in rows) * 0.6 + 2
    for r in rows:
        r["x0"], r["x1"] = r["depth"] * INDENT, box_right - r["depth"] * 0.6
    right_w = 1 if compact else max([len(r["site"]) for r in rows] + [len(r["io"]) for r in rows] + [len(HEADER)]) + 4
    arrows = _arrows(rows)
    total = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    trainable = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if p.requires_grad)
    tuners = sorted({s.tuner for s in sites})
    what = " + ".join(tuners) if tuners else "no tuner"
    if applied:
        title = (f"{type(base).__name__} with {what}: trainable {trainable:,} of {total:,} parameters "
                 f"({100 * trainable / max(total, 1):.2f} %)")
    else:
        title = (f"{type(base).__name__} ({total:,} parameters): where {what} would attach "
                 f"({len({s.path for s in sites})} modules; nothing applied yet)")
    n_lanes = sum(1 for x in sites if x.role != "added" and any(
        y.role == "added" and (y.tuner, y.adapter) == (x.tuner, x.adapter) for y in sites))
    return DiagramLayout(rows=rows, sites=sites, title=title, compact=compact, box_right=box_right,
                         width=box_right + right_w, margin=1.2 * n_lanes + 1.0,
                         height=max(r["bottom"] for r in rows) + 0.5, arrows=arrows)


def _arrows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A tuner that reads features at some modules and feeds them into a module it added (ResTuning's
    bypass: root and stems -> bypass -> target's input): one arrow per read or write, each in its own lane."""
    added = {(x.tuner, x.adapter): k for k, r in enumerate(rows) for x in r["sites"] if x.role == "added"}
    arrows = []
    for k, r in enumerate(rows):
        for x in r["sites"]:
            side = added.get((x.tuner, x.adapter))
            if side is None or x.role == "added":
                continue
            into_side = not x.role.startswith("target")
            src, dst = (k, side) if into_side else (side, k)
            arrows.append({"src": src, "dst": dst, "lane": len(arrows) + 1, "into_side": into_side})
    return arrows


class _Rows:
    """The rows of one layout attempt (which blocks are opened decides the rows)."""

    def __init__(self, base, by_path: dict[str, list[Site]], applied: bool, compact: bool):
        self.base, self.by_path, self.applied, self.compact = base, by_path, applied, compact

    def marked(self, node) -> bool:
        return node.tuner is not None or any(p in self.by_path for p in node.paths)

    def interesting(self, node) -> bool:
        return any(self.marked(n) for n in node.walk())

    def sites_at(self, node) -> list[Site]:
        return [x for p in node.paths for x in self.by_path.get(p, [])]

    def sites_below(self, node) -> list[Site]:
        return [x for n in node.walk() for x in self.sites_at(n)]

    def style_of(self, node, in_tuner: bool, opened: bool) -> str:
        path_sites = self.sites_at(node)
        if node.tuner is not None:
            return "tuner"
        if not opened and self.interesting(node):  # a closed block with tuners inside (compact drawing)
            inside = self.sites_below(node)
            return ("tuner" if any(n.tuner is not None for n in node.walk()) else
                    "match" if all(x.adapter is None for x in inside) else "hooked")
        if path_sites:
            return "match" if all(x.adapter is None for x in path_sites) else "hooked"
        total, trainable = _subtree_params(node) if not opened else (0, 0)
        if in_tuner and ((node.params and node.status != "frozen") or (not node.params and total and trainable == total)):
            return "trainable"
        return "frozen" if node.params or (total and not opened) else "container"

    def site_text(self, node, opened: bool) -> str:
        roles: dict[str, list[str]] = {}  # "LoRA[default]" -> its roles here (folded blocks: several)
        own = self.sites_at(node)
        for x in own:
            who, _, role = x.label().partition(": ")
            if role not in roles.setdefault(who, []):
                roles[who].append(role)
        if not opened:  # a closed block: count what is inside
            own_ids = {id(x) for x in own}
            inside: dict[str, int] = {}
            for x in self.sites_below(node):
                if id(x) not in own_ids:
                    who = x.label().partition(": ")[0]
                    inside[who] = inside.get(who, 0) + 1
            for who, n in inside.items():
                roles.setdefault(who, []).append(f"{n} module{'s' if n > 1 else ''} inside")
        return "; ".join(f"{who}: {', '.join(r)}" for who, r in roles.items())

    def rows(self, root, open_tuners: bool, max_open_depth: int | None) -> list[dict[str, Any]]:
        self.open_tuners, self.max_open_depth = open_tuners, max_open_depth
        self.out: list[dict[str, Any]] = []
        self.cursor = 0.0
        self.visit(root, 0, False)
        return self.out

    def visit(self, node, depth: int, in_tuner: bool) -> None:
        name = node.name or type(self.base).__name__
        text = f"{name} ({node.type_name})" if node.name else name
        if node.copies > 1:
            text += f"  x{node.copies}"
        opened = bool(node.children) and (depth == 0 or (
            (self.max_open_depth is None or depth < self.max_open_depth)
            and ((node.tuner is not None and self.open_tuners) or any(self.interesting(c) for c in node.children))))
        total, trainable = _subtree_params(node) if not opened else (
            sum(_numel(p.shape) for p in node.params), sum(_numel(p.shape) for p in node.params if p.trainable))
        if total:
            text += f"  {total:,} params" + _status_word(total, trainable, self.applied)
        tied = [p.tied_to for p in node.params if p.tied_to]
        if tied:  # counted once, where it was first seen
            text += f"  (weight shared with {tied[0].rsplit('.', 1)[0]})"
        if in_tuner and node.name == "base_layer":
            text += "  <- the wrapped op"
        module = self.base.get_submodule(node.paths[0]) if node.paths[0] else self.base
        row = {"depth": depth, "text": text, "style": self.style_of(node, in_tuner, opened),
               "site": self.site_text(node, opened),
               "io": _io_text(module) if self.marked(node) and getattr(module, "base_layer", True) is not None else "",
               "opened": opened, "copies": node.copies, "paths": list(node.paths), "y": self.cursor,
               "sites": self.sites_at(node)}
        self.out.append(row)
        extra = 0.7 if self.compact and row["site"] else 0.0  # compact: the site's line under the label
        self.cursor += 1.0 + extra
        if not opened:
            row["bottom"] = row["y"] + 0.85 + extra
            return
        children = list(node.children)
        quiet_run: list = []
        inner = in_tuner or node.tuner is not None
        for child in children:
            if len(children) > 5 and not self.interesting(child):
                quiet_run.append(child)
                continue
            self.flush(quiet_run, depth, inner)
            self.visit(child, depth + 1, inner)
        self.flush(quiet_run, depth, inner)
        row["bottom"] = self.cursor + 0.1  # the box closes below its last child
        self.cursor += 0.35

    def flush(self, quiet_run: list, depth: int, inner: bool) -> None:
        if len(quiet_run) >= 3:  # a run of untouched siblings: one summary box
            total = sum(_subtree_params(c)[0] * c.copies for c in quiet_run)
            trainable = sum(_subtree_params(c)[1] * c.copies for c in quiet_run)
            names = ", ".join(c.name for c in quiet_run[:3])
            self.out.append({"depth": depth + 1, "text": f"{len(quiet_run)} more modules ({names}, ...)  "
                             f"{total:,} params" + _status_word(total, trainable, self.applied), "style": "frozen",
                             "site": "", "io": "", "opened": False, "copies": 1, "paths": [], "y": self.cursor,
                             "bottom": self.cursor + 0.85, "sites": []})
            self.cursor += 1.0
        else:
            for c in quiet_run:
                self.visit(c, depth + 1, inner)
        quiet_run.clear()
