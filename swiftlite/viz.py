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

__all__ = ["plot_history", "bar_compare", "figures_dir", "save_figure", "adapter_switch_widget"]

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


def bar_compare(rows: Sequence[Mapping[str, Any]], metric: str, ax=None, title: str | None = None):
    """Horizontal bars of `row[metric]` per `row["name"]` (rows from `swiftlite.bench.measure` /
    `compare`). `*_bytes` metrics are drawn in MiB; `*_ratio` metrics get a line at 1. Returns the axes."""
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
    ax.set_xlabel(f"{metric} (MiB)" if unit else metric)
    ax.margins(x=0.2)
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
