"""Small figures and widgets for the tutorials: loss curves, bar charts of bench rows, saving
figures into the repository's `figures/` folder, an adapter switcher, a one-knob widget
(`knob_widget`) and a block diagram of where tuners attach, drawn from the real model
(`tuner_diagram`).

matplotlib and ipywidgets are imported inside the functions, so `import swiftlite.viz` is free.

Where figures go (`figures_dir()`):
- `$SWIFTLITE_FIGURES` when set (used as is);
- otherwise `<repo>/figures/`, where `<repo>` is the first folder at or above the current directory
  holding `pyproject.toml` and `swiftlite/` (a notebook runs in `tutorials/`, so this is
  `tutorials/../figures`), or `./figures` outside a checkout;
- in quick mode (`SWIFTLITE_QUICK=1`, the CI setting) the subfolder `quick/` of that, which
  ignores itself in git (a `.gitignore` holding `*`), so a smoke run never overwrites the
  figures of a full run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

__all__ = ["plot_history", "plot_evals", "bar_compare", "grouped_bars", "heatmap", "figures_dir", "save_figure",
           "adapter_switch_widget", "knob_widget", "tuner_diagram", "attachment_sites", "Site"]

BASE_MODEL_OPTION = "(base model: disable_adapter)"


def _smooth(values: Sequence[float], beta: float) -> list[float]:
    # m_t = β m_{t-1} + (1-β) x_t ;  smoothed_t = m_t / (1 - β^t)   (debiased EMA)
    out, m = [], 0.0
    for t, x in enumerate(values, start=1):
        m = beta * m + (1 - beta) * x
        out.append(m / (1 - beta**t))
    return out


def plot_history(history: Any, labels: str | Sequence[str] | None = None, ax=None, smooth: float = 0.9,
                 title: str | None = None):
    """Training-loss curves: a faint raw curve and its smoothed version per run.

    `history` is a `swiftlite.train.History` (anything with a `.loss` list), a list of them, or a
    dict {label: history}. `labels` names the runs (default "run 0", "run 1", ...). Returns the axes.
    """
    import matplotlib.pyplot as plt

    named, runs = _runs(history, "loss")
    labels = named if named is not None else labels
    if isinstance(labels, str):
        labels = [labels]
    labels = list(labels) if labels is not None else [f"run {i}" for i in range(len(runs))] if len(runs) > 1 else ["loss"]
    if len(labels) != len(runs):
        raise ValueError(f"plot_history(labels=...): got {len(labels)} labels for {len(runs)} histories")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    for run, label in zip(runs, labels):
        loss = list(getattr(run, "loss", run))
        if not loss:
            raise ValueError(f"plot_history: history {label!r} has no loss values (was it trained?)")
        steps = range(1, len(loss) + 1)
        (line,) = ax.plot(steps, loss, alpha=0.25, linewidth=1)
        ax.plot(steps, _smooth(loss, smooth), color=line.get_color(), linewidth=1.8, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return ax


def _runs(history: Any, attr: str) -> tuple[list[str] | None, list[Any]]:
    """(the labels a dict gives, else None; the runs) of one History (it has `attr`), a list of them
    or a dict {label: history}."""
    if isinstance(history, Mapping):
        return list(history), list(history.values())
    return None, [history] if hasattr(history, attr) else list(history)


def plot_evals(history: Any, metric: str, labels: str | Sequence[str] | None = None, ax=None,
               start: float | Sequence[float] | None = None, ylabel: str | None = None, title: str | None = None):
    """Curves of an evaluation metric over training: `history.evals` holds `(step, {metric: value})`
    pairs (`train(eval_fn=..., eval_every=...)`). `history` is one History, a list or a dict
    {label: history}, as in `plot_history`. `start` (one value or one per run) is drawn at step 0,
    the value before training. Returns the axes."""
    import matplotlib.pyplot as plt

    named, runs = _runs(history, "evals")
    labels = named if named is not None else labels
    labels = [labels] if isinstance(labels, str) else list(labels) if labels is not None else [f"run {i}" for i in range(len(runs))]
    starts = [None] * len(runs) if start is None else [start] * len(runs) if isinstance(start, (int, float)) else list(start)
    if len(labels) != len(runs) or len(starts) != len(runs):
        raise ValueError(f"plot_evals: got {len(labels)} labels and {len(starts)} start values for {len(runs)} histories")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    for run, label, first in zip(runs, labels, starts):
        points = [(step, m[metric]) for step, m in run.evals if metric in m]
        if not points:
            raise ValueError(f"plot_evals: history {label!r} has no {metric!r} in its evals "
                             f"(train with eval_fn returning {{{metric!r}: ...}} and eval_every=...)")
        if first is not None:
            points = [(0, float(first))] + points
        steps, values = zip(*points)
        ax.plot(steps, values, marker="o", markersize=3, linewidth=1.8, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel or metric)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False)
    return ax


def heatmap(values: Sequence[Sequence[float]], row_labels: Sequence[str], col_labels: Sequence[str], ax=None,
            fmt: str = "{:.1%}", vmin: float | None = None, vmax: float | None = None, cmap: str = "viridis",
            colorbar_label: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
            title: str | None = None):
    """A table of numbers as a coloured grid, each cell annotated with `fmt.format(value)`
    (rows top to bottom in the given order). Returns the axes."""
    import matplotlib.pyplot as plt
    import numpy as np

    data = np.asarray(values, dtype=float)
    if data.shape != (len(row_labels), len(col_labels)):
        raise ValueError(f"heatmap: values have shape {data.shape}, labels give ({len(row_labels)}, {len(col_labels)})")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.3 * len(col_labels) + 2.2, 0.6 * len(row_labels) + 1.2))
    image = ax.imshow(data, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(col_labels)), labels=list(col_labels))
    ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
    low, high = image.norm.vmin, image.norm.vmax
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            dark = (data[i, j] - low) < 0.5 * (high - low)  # light text on the dark end of viridis
            ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", color="white" if dark else "black")
    colorbar = ax.figure.colorbar(image, ax=ax)
    if colorbar_label:
        colorbar.set_label(colorbar_label)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def grouped_bars(names: Sequence[str], groups: Mapping[str, Sequence[float]], ax=None, xlabel: str | None = None,
                 reference: float | None = None, reference_label: str | None = None, title: str | None = None,
                 fmt: str = "{:.2f}", errors: Mapping[str, Sequence[float]] | None = None):
    """Horizontal bars, one bar per group (e.g. {"paper": [...], "ours": [...]}) beside each other
    for every name, one colour per group with a legend; the value axis starts at 0. `reference`
    draws a dashed line (e.g. 1 for ratios) labelled `reference_label`. `errors` (same keys, a
    subset of the groups) draws ± error bars, e.g. the standard deviation over seeds. Returns the axes."""
    import matplotlib.pyplot as plt

    if any(len(v) != len(names) for v in groups.values()):
        raise ValueError(f"grouped_bars: every group needs {len(names)} values, got "
                         f"{ {k: len(v) for k, v in groups.items()} }")
    errors = dict(errors or {})
    if set(errors) - set(groups) or any(len(v) != len(names) for v in errors.values()):
        raise ValueError(f"grouped_bars(errors=...): give {len(names)} values for groups among {list(groups)}, got "
                         f"{ {k: len(v) for k, v in errors.items()} }")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 0.55 * len(names) * max(1, len(groups)) / 2 + 1.2))
    height = 0.8 / len(groups)
    colors = ["#8c8c8c", "#4c72b0", "#dd8452", "#55a868"]
    for k, (group, values) in enumerate(groups.items()):
        ys = [i - 0.4 + height * (k + 0.5) for i in range(len(names))]
        bars = ax.barh(ys, [float("nan") if v is None else v for v in values], height=height,
                       color=colors[k % len(colors)], label=group, xerr=errors.get(group),
                       error_kw={"capsize": 2, "elinewidth": 0.8})
        for i, (bar, v) in enumerate(zip(bars, values)):
            if v is not None:  # the label after the error bar, if any
                ax.text(bar.get_width() + (errors[group][i] if group in errors else 0.0), bar.get_y() + bar.get_height() / 2,
                        " " + fmt.format(v), va="center", fontsize=7)
    ax.set_yticks(range(len(names)), labels=list(names))
    ax.invert_yaxis()  # first name on top
    finite = [v + (errors[g][i] if g in errors else 0.0) for g, vs in groups.items() for i, v in enumerate(vs)
              if v is not None]
    ax.set_xlim(0, 1.2 * max(finite + [reference or 0.0, 0.0]) or 1.0)  # from 0: bar lengths stay comparable
    if reference is not None:
        ax.axvline(reference, color="gray", linestyle="--", linewidth=1, label=reference_label)
    if xlabel:
        ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18 if xlabel else -0.1),
              ncol=1)  # below the axes: never over a bar, nor over a neighbouring axes' legend
    return ax


def bar_compare(rows: Sequence[Mapping[str, Any]], metric: str, ax=None, title: str | None = None,
                xlabel: str | None = None, log: bool = False):
    """Horizontal bars of `row[metric]` per `row["name"]` (rows from `swiftlite.bench.measure` /
    `compare`). `*_bytes` metrics are drawn in MiB; `*_ratio` metrics get a line at 1. `xlabel`
    replaces the metric's name on the axis; `log=True` draws the values on a log axis (for values
    that span decades). A linear axis always starts at 0. Returns the axes."""
    import matplotlib.pyplot as plt

    missing = [r.get("name", i) for i, r in enumerate(rows) if not isinstance(r.get(metric), (int, float))]
    if missing:
        raise KeyError(f"bar_compare(metric={metric!r}): rows {missing} have no numeric {metric!r}; "
                       f"available: {sorted(rows[0]) if rows else []}")
    names = [str(r.get("name", i)) for i, r in enumerate(rows)]
    scale, unit = (2**20, " MiB") if metric.endswith("_bytes") else (1, "")
    values = [float(r[metric]) / scale for r in rows]
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 0.45 * len(rows) + 1.2))
    bars = ax.barh(names, values, color="#4c72b0")
    ax.invert_yaxis()  # first row on top
    for bar, v in zip(bars, values):
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, f" {v:.3g}{unit}", va="center", fontsize=8)
    if metric.endswith("_ratio"):
        ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel(xlabel or (f"{metric} (MiB)" if unit else metric))
    if log:
        ax.set_xscale("log")
        ax.margins(x=0.2)
    else:
        ax.set_xlim(0, 1.25 * max(values + [0.0]) or 1.0)  # from 0: bar lengths stay comparable
    if title:
        ax.set_title(title)
    return ax


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
    if os.environ.get("SWIFTLITE_QUICK") == "1":
        folder = folder / "quick"
    return folder


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write `fig` to `figures_dir()/<name>.png` (atomically) and return the path."""
    if not name or os.sep in name or "/" in name:
        raise ValueError(f"save_figure(name={name!r}): give a plain file name such as '00_tour_loss'")
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if folder.name == "quick" and not (folder / ".gitignore").exists() and "SWIFTLITE_FIGURES" not in os.environ:
        (folder / ".gitignore").write_text("*\n")  # quick-mode figures never reach git
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    os.replace(tmp, path)
    return path


def adapter_switch_widget(model, inputs: Any, render_fn: Callable[[Any, Any], Any], options: Sequence[str] | None = None):
    """A dropdown that switches which adapter of a SwiftModel is active and re-renders.

    Choosing an adapter calls `model.set_active_adapters(name)` (so the choice stays in effect
    after the widget is gone); the last option runs `render_fn` inside `model.disable_adapter()`.
    `render_fn(model, inputs)` may return a matplotlib figure, a string or anything IPython can
    display. Returns an `ipywidgets.VBox([dropdown, output])`; its `.dropdown` attribute is the
    dropdown and `.renders` counts renders.
    """
    import ipywidgets as widgets

    names = list(options if options is not None else getattr(model, "adapters", {}))
    if not names:
        raise ValueError("adapter_switch_widget: the model has no adapters; add one with Swift.prepare_model first")
    unknown = [n for n in names if n not in model.adapters]
    if unknown:
        raise ValueError(f"adapter_switch_widget(options=...): unknown adapters {unknown}; model has {list(model.adapters)}")
    dropdown = widgets.Dropdown(options=names + [BASE_MODEL_OPTION], value=names[0], description="adapter")
    output = widgets.Output()
    box = widgets.VBox([dropdown, output])
    box.dropdown, box.renders = dropdown, 0

    def render(choice: str) -> None:
        if choice == BASE_MODEL_OPTION:
            with model.disable_adapter():
                result = render_fn(model, inputs)
        else:
            model.set_active_adapters(choice)
            result = render_fn(model, inputs)
        _show_in(output, result)
        box.renders += 1

    dropdown.observe(lambda change: render(change["new"]), names="value")
    render(dropdown.value)
    return box


def agent_chat_widget(model, tokenizer, questions: Sequence[str], **kwargs: Any):
    """Chat with a ReAct agent: type or choose a request, switch a SwiftModel's adapters (or the base
    model) with toggle buttons, and see the trajectory with the real tool results. The widget is
    `swiftlite.llm.agent.chat_widget` (keyword arguments go to it)."""
    from swiftlite.llm.agent import chat_widget

    return chat_widget(model, tokenizer, questions, **kwargs)


def knob_widget(control, render: Callable[[Any], Any]):
    """One knob and what it changes: `control` (an ipywidgets control with a `value`: a slider, a
    dropdown, toggle buttons) above an Output that shows `render(control.value)`, re-rendered
    whenever the knob moves.

    `render(value)` returns a string (printed: give it a line that changes with the value, so a
    reader and the browser test see the change), a matplotlib figure (shown once, then closed),
    anything IPython can display, or a tuple of these (shown in order). Returns an
    `ipywidgets.VBox([control, output])` with `.control`, `.output`, `.renders` (how many renders)
    and `.last` (the last value rendered).
    """
    import ipywidgets as widgets

    if not isinstance(control, widgets.ValueWidget):
        raise TypeError(f"knob_widget(control=...): expected an ipywidgets control with a value (IntSlider, "
                        f"FloatSlider, Dropdown, ToggleButtons, ...), got {type(control).__name__}")
    if not callable(render):
        raise TypeError(f"knob_widget(render=...): expected a function of the control's value, got {type(render).__name__}")
    output = widgets.Output()
    box = widgets.VBox([control, output])
    box.control, box.output, box.renders, box.last = control, output, 0, None

    def show(value: Any) -> None:
        _show_in(output, render(value))
        box.renders += 1
        box.last = value

    control.observe(lambda change: show(change["new"]), names="value")
    show(control.value)
    return box


def _show_in(output: Any, result: Any) -> None:
    """Replace what a widget's `output` shows with `result`: a figure, a str, any displayable, or a
    tuple of those (shown one after the other)."""
    from IPython.display import display

    output.clear_output(wait=True)
    with output:
        for item in result if isinstance(result, tuple) else (result,):
            if hasattr(item, "savefig"):  # a matplotlib figure: shown once, not twice
                import matplotlib.pyplot as plt

                display(item)
                plt.close(item)
            elif isinstance(item, str):
                print(item)
            elif item is not None:
                display(item)


# ---- tuner_diagram: a block schematic drawn from the real model ---------------------------------------
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
    from .core.config import get_tuner

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
    import torch.nn as nn

    from .core.inspect import _tuner_state
    from .core.layer import TunerLayer
    from .core.model import SwiftModel

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
            for adapter, state in _tuner_state(layer).items():
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
        from .core.config import SwiftConfig

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
    import torch.nn as nn

    from .core.modules import innermost_base_layer
    from .core.tuner import feature_width

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
    """(parameters, trainable parameters) below and at `node` (one copy of a folded block)."""
    total = trainable = 0
    for n in node.walk():
        for p in n.params:
            if p.tied_to is None:
                total += _numel(p.shape)
                trainable += _numel(p.shape) if p.trainable else 0
    return total, trainable


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
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch, Patch

    from .core.inspect import _build, _fold, _join_containers
    from .core.model import SwiftModel

    sites = attachment_sites(model, config)
    applied = isinstance(model, SwiftModel)  # a plain model is not frozen yet: no trainable/frozen words
    base = model.base_model if isinstance(model, SwiftModel) else model
    by_path: dict[str, list[Site]] = {}
    for site in sites:
        by_path.setdefault(site.path, []).append(site)
    root = _build(base, "", "", 0, None, set(by_path), {}, {})
    _fold(root)
    _join_containers(root)

    def marked(node) -> bool:
        return node.tuner is not None or any(p in by_path for p in node.paths)

    def interesting(node) -> bool:
        return any(marked(n) for n in node.walk())

    def sites_below(node) -> list[Site]:
        return [x for n in node.walk() for p in n.paths for x in by_path.get(p, [])]

    def style_of(node, in_tuner: bool, opened: bool) -> str:
        path_sites = [x for p in node.paths for x in by_path.get(p, [])]
        if node.tuner is not None:
            return "tuner"
        if not opened and interesting(node):  # a closed block with tuners inside (compact drawing)
            inside = sites_below(node)
            return ("tuner" if any(n.tuner is not None for n in node.walk()) else
                    "match" if all(x.adapter is None for x in inside) else "hooked")
        if path_sites:
            return "match" if all(x.adapter is None for x in path_sites) else "hooked"
        total, trainable = _subtree_params(node) if not opened else (0, 0)
        if in_tuner and ((node.params and node.status != "frozen") or (not node.params and total and trainable == total)):
            return "trainable"
        return "frozen" if node.params or (total and not opened) else "container"

    def site_text(node, opened: bool) -> str:
        roles: dict[str, list[str]] = {}  # "LoRA[default]" -> its roles here (folded blocks: several)
        own = [x for p in node.paths for x in by_path.get(p, [])]
        for x in own:
            who, _, role = x.label().partition(": ")
            if role not in roles.setdefault(who, []):
                roles[who].append(role)
        if not opened:  # a closed block: count what is inside
            own_ids = {id(x) for x in own}
            inside: dict[str, int] = {}
            for x in sites_below(node):
                if id(x) not in own_ids:
                    who = x.label().partition(": ")[0]
                    inside[who] = inside.get(who, 0) + 1
            for who, n in inside.items():
                roles.setdefault(who, []).append(f"{n} module{'s' if n > 1 else ''} inside")
        return "; ".join(f"{who}: {', '.join(r)}" for who, r in roles.items())

    def layout(open_tuners: bool, max_open_depth: int | None) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        cursor = [0.0]

        def visit(node, depth: int, in_tuner: bool) -> None:
            name = node.name or type(base).__name__
            text = f"{name} ({node.type_name})" if node.name else name
            if node.copies > 1:
                text += f"  x{node.copies}"
            opened = bool(node.children) and (depth == 0 or (
                (max_open_depth is None or depth < max_open_depth)
                and ((node.tuner is not None and open_tuners) or any(interesting(c) for c in node.children))))
            total, trainable = _subtree_params(node) if not opened else (
                sum(_numel(p.shape) for p in node.params), sum(_numel(p.shape) for p in node.params if p.trainable))
            if total:
                text += f"  {total:,} params" + _status_word(total, trainable, applied)
            tied = [p.tied_to for p in node.params if p.tied_to]
            if tied:  # counted once, where it was first seen
                text += f"  (weight shared with {tied[0].rsplit('.', 1)[0]})"
            if in_tuner and node.name == "base_layer":
                text += "  <- the wrapped op"
            module = base.get_submodule(node.paths[0]) if node.paths[0] else base
            row = {"depth": depth, "text": text, "style": style_of(node, in_tuner, opened),
                   "site": site_text(node, opened),
                   "io": _io_text(module) if marked(node) and getattr(module, "base_layer", True) is not None else "",
                   "opened": opened, "copies": node.copies, "paths": list(node.paths), "y": cursor[0],
                   "sites": [x for p in node.paths for x in by_path.get(p, [])]}
            rows.append(row)
            extra = 0.7 if compact and row["site"] else 0.0  # compact: the site's line under the label
            cursor[0] += 1.0 + extra
            if not opened:
                row["bottom"] = row["y"] + 0.85 + extra
                return
            children = list(node.children)
            quiet_run: list = []
            inner = in_tuner or node.tuner is not None

            def flush() -> None:
                if len(quiet_run) >= 3:  # a run of untouched siblings: one summary box
                    total = sum(_subtree_params(c)[0] * c.copies for c in quiet_run)
                    trainable = sum(_subtree_params(c)[1] * c.copies for c in quiet_run)
                    names = ", ".join(c.name for c in quiet_run[:3])
                    rows.append({"depth": depth + 1, "text": f"{len(quiet_run)} more modules ({names}, ...)  "
                                 f"{total:,} params" + _status_word(total, trainable, applied), "style": "frozen",
                                 "site": "", "io": "", "opened": False, "copies": 1, "paths": [], "y": cursor[0],
                                 "bottom": cursor[0] + 0.85, "sites": []})
                    cursor[0] += 1.0
                else:
                    for c in quiet_run:
                        visit(c, depth + 1, inner)
                quiet_run.clear()

            for child in children:
                if len(children) > 5 and not interesting(child):
                    quiet_run.append(child)
                    continue
                flush()
                visit(child, depth + 1, inner)
            flush()
            row["bottom"] = cursor[0] + 0.1  # the box closes below its last child
            cursor[0] += 0.35

        visit(root, 0, False)
        return rows

    # the full drawing, or (too tall) tuner layers closed, then blocks closed from the deepest level up
    compact = ax is not None  # the caller's axes (often one of several): sites inside the boxes, no right column
    depth_of_tree = max(len(p.split(".")) for n in root.walk() for p in n.paths if p) if list(base.children()) else 1
    for open_tuners, max_open_depth in [(True, None), (False, None)] + [(False, d) for d in range(depth_of_tree, 0, -1)]:
        rows = layout(open_tuners, max_open_depth)
        if len(rows) <= max_rows:
            break

    # layout in character units (x) and rows (y, downwards)
    indent, char_w, row_h = 2.0, 0.075, 0.3  # inches per character / per row
    if compact:
        for r in rows:
            r["site_line"] = "  ".join(t for t in (r["site"], r["io"]) if t)
    left_w = max(r["depth"] * indent + max(len(r["text"]), len(r.get("site_line", "")) * 0.87) + 2 for r in rows)
    max_depth = max(r["depth"] for r in rows)
    box_right = left_w + max_depth * 0.6 + 2
    header = "where the tuner attaches  |  wrapped op: input -> output width"
    right_w = 1 if compact else max([len(r["site"]) for r in rows] + [len(r["io"]) for r in rows] + [len(header)]) + 4
    total_w = box_right + right_w
    n_lanes = sum(1 for x in sites if x.role != "added" and any(y.role == "added" and (y.tuner, y.adapter) == (x.tuner, x.adapter)
                                                                for y in sites))
    margin = 1.2 * n_lanes + 1.0
    height = max(r["bottom"] for r in rows) + 0.5

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
        x0 = r["depth"] * indent
        x1 = box_right - r["depth"] * 0.6
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
    # a tuner that reads features at some modules and feeds them into a module it added (ResTuning's
    # bypass: root and stems -> bypass -> target's input): arrows in the left margin
    added = {(x.tuner, x.adapter): r for r in rows for x in r["sites"] if x.role == "added"}
    lane = 0
    for r in rows:
        for x in r["sites"]:
            side = added.get((x.tuner, x.adapter))
            if side is None or x.role == "added":
                continue
            into_side = not x.role.startswith("target")
            src, dst = (r, side) if into_side else (side, r)
            lane += 1
            x_lane = -1.2 * lane  # each arrow runs down its own lane in the left margin
            arm_a = (src["depth"] * indent - x_lane) * unit_x * 72  # points
            arm_b = (dst["depth"] * indent - x_lane) * unit_x * 72
            ax.annotate("", xy=(dst["depth"] * indent, dst["y"] + 0.5), xytext=(src["depth"] * indent, src["y"] + 0.5),
                        zorder=20, annotation_clip=False,
                        arrowprops=dict(arrowstyle="-|>", color=_DIAGRAM_STYLE["hooked" if into_side else "tuner"]["edgecolor"],
                                        linewidth=1.0, shrinkA=0, shrinkB=0,
                                        connectionstyle=f"arc,angleA=180,armA={arm_a:.1f},angleB=180,armB={arm_b:.1f},rad=3"))
    if not compact:
        ax.text(box_right + 1.8, -0.6, header, fontsize=fs * 0.93, family="monospace", color="#374151", va="center")
    used = [k for k in _DIAGRAM_STYLE if any(r["style"] == k for r in rows)]
    handles = [Patch(label=_DIAGRAM_LEGEND[k], **{a: v for a, v in _DIAGRAM_STYLE[k].items()}) for k in used]
    if lane:
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color=_DIAGRAM_STYLE["hooked"]["edgecolor"], marker=">", markersize=4,
                              label="feature read by the tuner / written back"))
    if any(r["copies"] > 1 for r in rows):
        handles.append(Patch(facecolor="#ffffff", edgecolor="#9ca3af", label="stacked box 'x N': N identical blocks (counts are per block)"))
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
