"""`show(model)`: the structure of a model as a tree, OpenDelta style.

    >>> print(swiftlite.show(Swift.prepare_model(llama, LoRAConfig(target_modules=["q_proj"]))))
    SwiftModel [adapters: default:active]
    └── base_model (LlamaForCausalLM)
        ├── model (LlamaModel)
        │   ├── embed_tokens (Embedding) weight:[64,32] (frozen)
        │   ├── layers.0-1 (LlamaDecoderLayer) x2          <- 2 identical blocks, folded
        │   │   ├── self_attn (LlamaAttention)
        │   │   │   ├── q_proj (LoRALinear) [tuner default:active]
        │   │   │   │   ├── base_layer (Linear) weight:[32,32] (frozen)
        │   │   │   │   ├── lora_A.default (Linear) weight:[8,32] (trainable)
        │   │   │   │   ├── lora_B.default (Linear) weight:[32,8] (trainable)
        ...
    total 20,640 | trainable 1,024 (4.96%) | tuner 1,024 (4.96%) | frozen 19,616

Rules
- Each line is one module: its name, `(ClassName)`, then its *own* parameters with their shapes
  (`weight:[out,in] bias:[out]`) and whether they are trainable (`requires_grad`) or frozen.
- Sibling blocks with numeric names (a ModuleList) whose whole subtree is identical — same
  classes, names, shapes, trainable flags, tuner state and config matches — fold into a range
  `layers.0-11`. Blocks that differ (one has a LoRA, the next not) stay apart.
- A ModuleList / ModuleDict that shows a single entry joins it on one line (`lora_A.default`);
  an empty one is not shown.
- Tuner layers (`TunerLayer`) list their adapters and whether each is active, inactive or merged.
- With `config=` (a SwiftConfig not yet applied), the modules `config.matched_modules(model)`
  would attach to are marked `<< match`.
- Totals count every parameter once (tied weights too): total, trainable, tuner (parameters that
  belong to an adapter of a tuner layer) and frozen.

The returned `ModelTree` prints as text (`str`, ANSI colours only when stdout is a terminal) and
renders in Jupyter as a collapsible, coloured HTML tree (`_repr_html_`).
"""
from __future__ import annotations

import html
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn

from ..core.config import SwiftConfig
from ..core.layer import TunerLayer
from .model import SwiftModel

MATCH_MARK = "<< match"

# ANSI colours (text mode, terminals only) and their HTML counterparts.
_ANSI = {"tuner": "\033[1;35m", "trainable": "\033[32m", "frozen": "\033[2m", "match": "\033[1;33m",
         "range": "\033[36m", "reset": "\033[0m"}
_CSS = {"tuner": "color:#a020a0;font-weight:bold", "trainable": "color:#15803d", "frozen": "color:#888",
        "match": "background:#fde68a;font-weight:bold", "range": "color:#0e7490;font-weight:bold"}


@dataclass
class ParamInfo:
    name: str
    shape: tuple[int, ...]
    trainable: bool
    tied_to: str | None = None  # path of the parameter it shares storage with (shown earlier)

    def text(self) -> str:
        shape = ",".join(str(s) for s in self.shape)
        tied = f"(tied:{self.tied_to})" if self.tied_to else ""
        return f"{self.name}:[{shape}]{tied}"


@dataclass
class Node:
    """One line of the tree. A folded node stands for several identical sibling blocks: `paths`
    holds the full module path of every copy (its descendants' `paths` likewise)."""

    name: str
    type_name: str
    paths: list[str]
    params: list[ParamInfo] = field(default_factory=list)
    tuner: dict[str, str] | None = None  # adapter -> "active" | "inactive" | "merged"
    matched: bool = False
    children: list["Node"] = field(default_factory=list)
    hidden: tuple[int, int, int, int] | None = None  # (submodules, params, tuner layers, matches) below max_depth
    shared_with: str | None = None  # this module object was already shown at that path
    container: bool = False  # a ModuleList / ModuleDict (joined with a single child on display)
    note: str = ""  # extra text after the class name (the root's adapter list)
    copies: int = 1  # how many sibling blocks this (folded) line stands for

    # Structure of the subtree without this node's own name: equal signatures fold together.
    def signature(self) -> tuple:
        return (self.type_name, tuple((p.name, p.shape, p.trainable, p.tied_to is not None) for p in self.params),
                tuple(sorted((self.tuner or {}).items())), self.matched, self.hidden, self.shared_with is not None,
                tuple((c.name, c.signature()) for c in self.children))

    @property
    def status(self) -> str | None:
        """'trainable', 'frozen' or 'mixed' for the module's own parameters (None if it has none)."""
        if not self.params:
            return None
        flags = {p.trainable for p in self.params}
        return "mixed" if len(flags) == 2 else ("trainable" if True in flags else "frozen")

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


def tuner_state(layer: TunerLayer) -> dict[str, str]:
    """{adapter name: "active" | "inactive" | "merged"} of a tuner layer."""
    return {n: "merged" if n in layer.merged_adapters else ("active" if layer.is_active(n) else "inactive")
            for n in layer.adapter_names}


def _build(module: nn.Module, name: str, path: str, depth: int, max_depth: int | None, matched: set[str],
           seen_modules: dict[int, str], seen_params: dict[int, str]) -> Node:
    node = Node(name=name, type_name=type(module).__name__, paths=[path], matched=path in matched,
                container=isinstance(module, (nn.ModuleList, nn.ModuleDict)))
    if id(module) in seen_modules:
        node.shared_with = seen_modules[id(module)]
        return node
    seen_modules[id(module)] = path
    for pname, p in module.named_parameters(recurse=False):
        full = f"{path}.{pname}" if path else pname
        node.params.append(ParamInfo(pname, tuple(p.shape), p.requires_grad, seen_params.get(id(p))))
        seen_params.setdefault(id(p), full)
    if isinstance(module, TunerLayer):
        node.tuner = tuner_state(module)
    if max_depth is not None and depth >= max_depth:
        subs = list(module.named_modules(prefix=path))[1:]
        if subs:
            below = {id(p): p for _, p in module.named_parameters() if id(p) not in seen_params}
            n_tuners = sum(isinstance(m, TunerLayer) for _, m in subs)
            n_matched = sum(name in matched for name, _ in subs)
            node.hidden = (len(subs), sum(p.numel() for p in below.values()), n_tuners, n_matched)
            for full, p in module.named_parameters(prefix=path):
                seen_params.setdefault(id(p), full)
        return node
    for child_name, child in module.named_children():
        child_path = f"{path}.{child_name}" if path else child_name
        sub = _build(child, child_name, child_path, depth + 1, max_depth, matched, seen_modules, seen_params)
        if sub.container and not (sub.children or sub.params or sub.hidden or sub.matched):
            continue  # an empty ModuleDict (e.g. an unused adapter slot) says nothing
        node.children.append(sub)
    return node


def _merge_into(target: Node, other: Node) -> None:
    """Add `other`'s paths to `target` (same signature), recursively."""
    target.paths.extend(other.paths)
    for a, b in zip(target.children, other.children):
        _merge_into(a, b)


def _fold(node: Node) -> None:
    """Fold runs of consecutive numeric siblings with identical subtrees into `first-last`."""
    for child in node.children:
        _fold(child)
    out: list[Node] = []
    run: list[Node] = []

    def flush() -> None:
        if not run:
            return
        head = run[0]
        if len(run) > 1:
            for other in run[1:]:
                _merge_into(head, other)
            head.name = f"{run[0].name}-{run[-1].name}"
            head.copies = len(run)
        out.append(head)
        run.clear()

    for child in node.children:
        if run and child.name.isdigit() and run[-1].name.isdigit() \
                and int(child.name) == int(run[-1].name) + 1 and child.signature() == run[0].signature():
            run.append(child)
            continue
        flush()
        run.append(child)
    flush()
    node.children = out


def _join_containers(node: Node) -> None:
    """`layers (ModuleList)` with one shown entry `0-11 (Block)` becomes `layers.0-11 (Block)`."""
    for i, child in enumerate(node.children):
        _join_containers(child)
        if child.container and len(child.children) == 1 and not child.params and not child.matched:
            only = child.children[0]
            only.name = f"{child.name}.{only.name}"
            node.children[i] = only


def compress_names(names: list[str]) -> list[str]:
    """['layers.0.q', 'layers.1.q', 'layers.3.q'] -> ['layers.0-1,3.q'] (first numeric part varies)."""
    groups: dict[tuple, list[int]] = {}
    order: list[tuple] = []
    for name in names:
        parts = name.split(".")
        idx = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        key = (tuple(parts), None) if idx is None else (tuple(parts[:idx]) + ("{}",) + tuple(parts[idx + 1:]), idx)
        if key not in groups:
            groups[key] = []
            order.append(key)
        if idx is not None:
            groups[key].append(int(parts[idx]))
    out = []
    for key in order:
        parts, idx = key
        if idx is None:
            out.append(".".join(parts))
            continue
        out.append(".".join(parts).replace("{}", _ranges(groups[key]), 1))
    return out


def _ranges(values: list[int]) -> str:
    values = sorted(set(values))
    spans, start = [], values[0]
    for prev, cur in zip(values, values[1:] + [None]):
        if cur != prev + 1 if cur is not None else True:
            spans.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ",".join(spans)


@dataclass
class ModelTree:
    """What `show()` returns: the folded tree, the totals and (with a config) the matched modules."""

    root: Node
    totals: dict[str, int]
    matched: list[str] | None = None  # config.matched_modules(...) when a config was given
    config_name: str | None = None
    match_prefix: str = ""  # "base_model." when the model is a SwiftModel

    # ---- queries (used by the tests and handy in notebooks) ------------------------------------
    def marked_paths(self) -> list[str]:
        """Module paths (relative to the matched model) shown with the match mark."""
        n = len(self.match_prefix)
        return sorted(p[n:] for node in self.root.walk() if node.matched for p in node.paths)

    def tuner_paths(self) -> list[str]:
        return sorted(p for node in self.root.walk() if node.tuner is not None for p in node.paths)

    # ---- text ------------------------------------------------------------------------------------
    def _label_parts(self, node: Node) -> list[tuple[str, str | None]]:
        """(text, style) pieces of one line."""
        parts: list[tuple[str, str | None]] = []
        if node.name:
            is_range = "-" in node.name.rsplit(".", 1)[-1]
            parts.append((node.name, "range" if is_range else ("tuner" if node.tuner is not None else None)))
            parts.append((f" ({node.type_name})", "tuner" if node.tuner is not None else None))
        else:  # the root
            parts.append((node.type_name, None))
        if node.note:
            parts.append((f" {node.note}", "tuner"))
        if node.copies > 1:
            parts.append((f" x{node.copies}", "range"))
        if node.tuner is not None:
            state = " ".join(f"{a}:{s}" for a, s in node.tuner.items())
            parts.append((f" [tuner {state}]", "tuner"))
        if node.params:
            status = node.status
            star = status == "mixed"
            text = " ".join(p.text() + ("*" if star and p.trainable else "") for p in node.params)
            tag = "(* trainable, rest frozen)" if star else f"({status})"
            parts.append((f" {text} {tag}", "trainable" if status != "frozen" else "frozen"))
        if node.shared_with:
            parts.append((f" (same module as {node.shared_with})", "frozen"))
        if node.hidden:
            subs, n_params, n_tuners, n_matched = node.hidden
            extra = f", {n_tuners} tuner layers" if n_tuners else ""
            parts.append((f" ... {subs} submodules, {n_params:,} params{extra}", "tuner" if n_tuners else "frozen"))
            if n_matched:
                parts.append((f" ({n_matched} matches inside)", "match"))
        if node.matched:
            parts.append((f" {MATCH_MARK}", "match"))
        return parts

    def _footer(self) -> list[str]:
        t = self.totals
        pct = lambda n: 100.0 * n / max(t["total"], 1)  # noqa: E731
        lines = [f"total {t['total']:,} | trainable {t['trainable']:,} ({pct(t['trainable']):.2f}%) | "
                 f"tuner {t['tuner']:,} ({pct(t['tuner']):.2f}%) | frozen {t['frozen']:,}"]
        if self.matched is not None:
            lines.append(f"{self.config_name} would attach to {len(self.matched)} modules (marked '{MATCH_MARK}'): "
                         + ", ".join(compress_names(self.matched)))
        return lines

    def to_text(self, color: bool = False) -> str:
        def paint(text: str, style: str | None) -> str:
            return f"{_ANSI[style]}{text}{_ANSI['reset']}" if color and style else text

        lines: list[str] = []

        def visit(node: Node, prefix: str, connector: str, child_prefix: str) -> None:
            lines.append(prefix + connector + "".join(paint(t, s) for t, s in self._label_parts(node)))
            for i, child in enumerate(node.children):
                last = i == len(node.children) - 1
                visit(child, prefix + child_prefix, "└── " if last else "├── ", "    " if last else "│   ")

        visit(self.root, "", "", "")
        return "\n".join(lines + self._footer())

    def __str__(self) -> str:
        use_color = sys.stdout.isatty() and "NO_COLOR" not in os.environ and "ipykernel" not in sys.modules
        return self.to_text(color=use_color)

    def __repr__(self) -> str:
        return self.to_text(color=False)

    # ---- HTML (Jupyter) ---------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        def label(node: Node) -> str:
            return "".join(f"<span style='{_CSS[s]}'>{html.escape(t)}</span>" if s else html.escape(t)
                           for t, s in self._label_parts(node))

        def interesting(node: Node) -> bool:
            return any(n.tuner is not None or n.matched for n in node.walk())

        def visit(node: Node, depth: int) -> str:
            if not node.children:
                return f"<div style='margin-left:1.4em'>{label(node)}</div>"
            is_open = " open" if depth < 2 or interesting(node) else ""
            inner = "".join(visit(c, depth + 1) for c in node.children)
            return (f"<details{is_open} style='margin-left:{0 if depth == 0 else 1}em'><summary>{label(node)}</summary>"
                    f"{inner}</details>")

        legend = " ".join(f"<span style='{_CSS[k]}'>{k}</span>" for k in ("tuner", "trainable", "frozen", "match", "range"))
        footer = "".join(f"<div>{html.escape(line)}</div>" for line in self._footer())
        return (f"<div style='font-family:monospace;font-size:12px;line-height:1.45'>"
                f"<div style='margin-bottom:4px'>legend: {legend}</div>{visit(self.root, 0)}"
                f"<div style='margin-top:6px;border-top:1px solid #ccc;padding-top:4px'>{footer}</div></div>")


def module_tree(model: nn.Module, matched: set[str] = frozenset(), max_depth: int | None = None,
                fold: bool = True) -> Node:
    """The tree of `Node`s that `show` prints (rules in the module docstring): `matched` paths marked,
    identical numbered blocks folded when `fold`, one-entry containers joined. Reads only."""
    root = _build(model, "", "", 0, max_depth, set(matched), {}, {})
    if fold:
        _fold(root)
    _join_containers(root)
    return root


def _totals(model: nn.Module) -> dict[str, int]:
    params = {id(p): p for p in model.parameters()}  # tied weights once
    tuner_ids = {id(p) for m in model.modules() if isinstance(m, TunerLayer)
                 for a in m.adapter_names for _, p in m.adapter_parameters(a)}
    total = sum(p.numel() for p in params.values())
    trainable = sum(p.numel() for p in params.values() if p.requires_grad)
    tuner = sum(p.numel() for i, p in params.items() if i in tuner_ids)
    return {"total": total, "trainable": trainable, "tuner": tuner, "frozen": total - trainable}


def show(model: nn.Module, config: Any = None, max_depth: int | None = None, fold: bool = True) -> ModelTree:
    """The structure of `model` (a SwiftModel or any nn.Module) as a `ModelTree`.

    Args:
        config: a SwiftConfig *not yet applied*; the modules it would attach to
            (`config.matched_modules(model)`) are marked. For a SwiftModel the match is computed
            on its `base_model`, as `Swift.prepare_model` would.
        max_depth: expand modules down to this depth (root = 0); deeper subtrees are summarised.
        fold: fold identical numbered sibling blocks into ranges (`layers.0-11`).

    Returns a `ModelTree`: `print()` it for text, or leave it last in a notebook cell for HTML.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"show(model): expected an nn.Module, got {type(model).__name__}")
    if max_depth is not None and max_depth < 0:
        raise ValueError(f"show(max_depth={max_depth}): expected None or a depth >= 0")
    matched, prefix, config_name = None, "", None
    if config is not None:
        if not isinstance(config, SwiftConfig):
            raise TypeError(f"show(config=...): expected a SwiftConfig, got {type(config).__name__}")
        target = model.base_model if isinstance(model, SwiftModel) else model
        prefix = "base_model." if isinstance(model, SwiftModel) else ""
        matched = list(config.matched_modules(target))
        config_name = type(config).__name__
    root = module_tree(model, {prefix + m for m in matched or []}, max_depth, fold)
    if isinstance(model, SwiftModel):
        active = model.active_adapters
        root.note = "[adapters: " + (" ".join(f"{n}:{'active' if n in active else 'inactive'}"
                                               for n in model.adapters) or "none") + "]"
    return ModelTree(root=root, totals=_totals(model), matched=matched, config_name=config_name, match_prefix=prefix)
