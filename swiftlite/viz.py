"""Small figures and widgets for the tutorials: loss curves, bar charts of bench rows, saving
figures into the repository's `figures/` folder, and an adapter switcher.

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
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

__all__ = ["plot_history", "plot_evals", "bar_compare", "grouped_bars", "heatmap", "figures_dir", "save_figure",
           "adapter_switch_widget"]

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

    if isinstance(history, Mapping):
        labels, runs = list(history), list(history.values())
    elif hasattr(history, "loss"):
        runs = [history]
    else:
        runs = list(history)
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


def plot_evals(history: Any, metric: str, labels: str | Sequence[str] | None = None, ax=None,
               start: float | Sequence[float] | None = None, ylabel: str | None = None, title: str | None = None):
    """Curves of an evaluation metric over training: `history.evals` holds `(step, {metric: value})`
    pairs (`train(eval_fn=..., eval_every=...)`). `history` is one History, a list or a dict
    {label: history}, as in `plot_history`. `start` (one value or one per run) is drawn at step 0,
    the value before training. Returns the axes."""
    import matplotlib.pyplot as plt

    if isinstance(history, Mapping):
        labels, runs = list(history), list(history.values())
    elif hasattr(history, "evals"):
        runs = [history]
    else:
        runs = list(history)
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
                 fmt: str = "{:.2f}"):
    """Horizontal bars, one bar per group (e.g. {"paper": [...], "ours": [...]}) beside each other
    for every name, one colour per group with a legend; the value axis starts at 0. `reference`
    draws a dashed line (e.g. 1 for ratios) labelled `reference_label`. Returns the axes."""
    import matplotlib.pyplot as plt

    if any(len(v) != len(names) for v in groups.values()):
        raise ValueError(f"grouped_bars: every group needs {len(names)} values, got "
                         f"{ {k: len(v) for k, v in groups.items()} }")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 0.55 * len(names) * max(1, len(groups)) / 2 + 1.2))
    height = 0.8 / len(groups)
    colors = ["#8c8c8c", "#4c72b0", "#dd8452", "#55a868"]
    for k, (group, values) in enumerate(groups.items()):
        ys = [i - 0.4 + height * (k + 0.5) for i in range(len(names))]
        bars = ax.barh(ys, [float("nan") if v is None else v for v in values], height=height,
                       color=colors[k % len(colors)], label=group)
        for bar, v in zip(bars, values):
            if v is not None:
                ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + fmt.format(v), va="center", fontsize=7)
    ax.set_yticks(range(len(names)), labels=list(names))
    ax.invert_yaxis()  # first name on top
    finite = [v for vs in groups.values() for v in vs if v is not None]
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
        from IPython.display import display

        if choice == BASE_MODEL_OPTION:
            with model.disable_adapter():
                result = render_fn(model, inputs)
        else:
            model.set_active_adapters(choice)
            result = render_fn(model, inputs)
        output.clear_output(wait=True)
        with output:
            if hasattr(result, "savefig"):  # a matplotlib figure: show it once, not twice
                import matplotlib.pyplot as plt

                display(result)
                plt.close(result)
            elif isinstance(result, str):
                print(result)
            elif result is not None:
                display(result)
        box.renders += 1

    dropdown.observe(lambda change: render(change["new"]), names="value")
    render(dropdown.value)
    return box
