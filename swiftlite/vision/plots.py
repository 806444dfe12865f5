"""Figures and the tuner explorer widget for vision transfer results.

Inputs are the rows of ``swiftlite.vision.harness.run_suite`` / ``summarize``. matplotlib and
ipywidgets are imported inside the functions. Figures are saved with ``swiftlite.viz.save_figure``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .. import viz
from .harness import transfer

__all__ = ["memory_accuracy_scatter", "task_heatmap", "learning_curves", "paper_vs_ours", "explore_tuner",
           "tuner_explorer"]

_MARKERS = "osD^v<>PX*hp"


def memory_accuracy_scatter(summary: Sequence[Mapping[str, Any]], ax=None, title: str | None = None,
                            highlight: Sequence[str] = (), highlight_label: str = "highlighted"):
    """Peak training memory (MiB, log axis) against accuracy (%, mean ± std error bars), one labelled
    point per method (labels alternate right / left of the points, in accuracy order, to stay apart).
    ``highlight`` names are drawn in orange, with a legend entry ``highlight_label``. Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not summary:
        raise ValueError("memory_accuracy_scatter: no rows; pass summarize(run_suite(...))")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    order = sorted(range(len(summary)), key=lambda i: summary[i]["accuracy_mean"])
    for rank, i in enumerate(order):
        r = summary[i]
        x = r["peak_memory_bytes"] / 2**20
        y, err = 100 * r["accuracy_mean"], 100 * r["accuracy_std"]
        color = "#dd8452" if r["name"] in highlight else "#4c72b0"
        ax.errorbar(x, y, yerr=err, fmt="o", color=color, capsize=3, markersize=6)
        right = rank % 2 == 0
        ax.annotate(r["name"], (x, y), textcoords="offset points", xytext=(7 if right else -7, 0), fontsize=7,
                    ha="left" if right else "right", va="center")
    ax.set_xscale("log")
    ax.margins(x=0.35)
    ax.set_xlabel("peak training memory (MiB, log scale)")
    ax.set_ylabel("accuracy, mean over tasks (%)\n(error bar: std over seeds)")
    ax.grid(alpha=0.3)
    handles = [Line2D([], [], marker="o", linestyle="", color="#4c72b0", label="other methods")]
    if highlight:
        handles.insert(0, Line2D([], [], marker="o", linestyle="", color="#dd8452", label=highlight_label))
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper left")
    if title:
        ax.set_title(title)
    return ax


def task_heatmap(summary: Sequence[Mapping[str, Any]], ax=None, title: str | None = None):
    """Accuracy (%) per method (rows) and task (columns), annotated. Returns the axes."""
    tasks = list(summary[0]["tasks"])
    values = [[r["per_task"].get(t, (float("nan"), 0.0))[0] for t in tasks] for r in summary]
    ax = viz.heatmap(values, [r["name"] for r in summary], tasks, ax=ax, fmt="{:.0%}", vmin=0.0, vmax=1.0,
                     colorbar_label="test accuracy (mean over seeds)", xlabel="task",
                     title=title or "accuracy per task")
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_ha("right")
    return ax


def learning_curves(rows: Sequence[Mapping[str, Any]], ax=None, smooth: float = 0.9, title: str | None = None):
    """Smoothed training loss per run row (``row["loss"]``), one line per row labelled by its name
    (rows with the same name, e.g. several seeds, are averaged step by step). Returns the axes."""
    import matplotlib.pyplot as plt
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    by_name: dict[str, list[Sequence[float]]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r["loss"])
    for name, losses in by_name.items():
        n = min(len(loss) for loss in losses)
        mean = np.mean([loss[:n] for loss in losses], axis=0)
        m, smoothed = 0.0, []
        for t, value in enumerate(mean, start=1):  # debiased EMA: m_t = β m_{t-1} + (1-β) x_t, shown m_t / (1-β^t)
            m = smooth * m + (1 - smooth) * value
            smoothed.append(m / (1 - smooth**t))
        ax.plot(range(1, n + 1), smoothed, label=name)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (cross-entropy, smoothed)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title)
    return ax


def paper_vs_ours(names: Sequence[str], paper: Sequence[float | None], ours: Sequence[float | None], ax=None,
                  xlabel: str = "ratio to the baseline", reference: float | None = 1.0, title: str | None = None):
    """Paper and our values side by side (``swiftlite.viz.grouped_bars``), one pair per name."""
    return viz.grouped_bars(names, {"paper": list(paper), "ours (tiny scale)": list(ours)}, ax=ax, xlabel=xlabel,
                            reference=reference, reference_label="baseline" if reference is not None else None,
                            title=title, fmt="{:.2f}")


def explore_tuner(make_config: Callable[[str, int], Any], tuner: str, size: int, *, task: str = "shape-in-style",
                  steps: int = 30, seed: int = 0, model: str = "vit-tiny", lr: float | Callable[[str], float] = 1e-2,
                  size_label: str = "size", cache: dict | None = None, **transfer_kwargs: Any):
    """Fine-tune ``make_config(tuner, size)`` on ``task`` for ``steps`` steps (``transfer`` with five test
    evaluations on the way; ``cache`` keeps results per ``(tuner, size)``) and return ``(line, figure)``:
    the line ``"<tuner> <size_label>=<size>: N trainable params (p %), peak train memory M MiB, step time
    s ms, test accuracy a % after <steps> steps"`` and the loss and accuracy curves."""
    import matplotlib.pyplot as plt

    cache = {} if cache is None else cache
    if (tuner, size) not in cache:
        run_lr = lr(tuner) if callable(lr) else lr
        cache[tuner, size] = transfer(model, make_config(tuner, size), task, steps, seed,
                                      name=f"{tuner} {size_label}={size}", lr=run_lr,
                                      eval_every=max(1, steps // 5), **transfer_kwargs)
    row = cache[tuner, size]
    line = (f"{row['name']}: {row['trainable_params']:,} trainable params ({row['trainable_percent']:.2f} %), "
            f"peak train memory {row['peak_memory_bytes'] / 2**20:.2f} MiB, step time "
            f"{row['step_time_s'] * 1e3:.1f} ms, test accuracy {100 * row['accuracy']:.1f} % after {steps} steps")
    fig, (left, right) = plt.subplots(1, 2, figsize=(8, 2.8))
    learning_curves([row], ax=left, title=f"{task}: training loss")
    right.plot([step for step, _ in row["curve"]], [100 * a for _, a in row["curve"]], marker="o")
    right.set_xlabel("optimizer step")
    right.set_ylabel("test accuracy (%)")
    right.set_ylim(0, 100)
    right.set_title(f"{task}: test accuracy")
    fig.tight_layout()
    return line, fig


def tuner_explorer(make_config: Callable[[str, int], Any], tuners: Sequence[str], sizes: Sequence[int], *,
                   size_label: str = "size", **explore_kwargs: Any):
    """Two knobs — a tuner and its size — above an output showing :func:`explore_tuner`'s line and curves.

    ``make_config(tuner, size)`` returns the config (``None`` / ``LINEAR_PROBE`` allowed); results are
    cached per choice. Returns an ``ipywidgets.VBox``; ``.tuner`` and ``.size`` are its controls,
    ``.results`` the cache, ``.line`` the last printed line.
    """
    import ipywidgets as widgets

    if not tuners or not sizes:
        raise ValueError("tuner_explorer: give at least one tuner and one size")
    tuner_box = widgets.Dropdown(options=list(tuners), value=tuners[0], description="tuner")
    size_box = widgets.SelectionSlider(options=list(sizes), value=sizes[0], description=size_label)
    output = widgets.Output()
    box = widgets.VBox([widgets.HBox([tuner_box, size_box]), output])
    box.tuner, box.size, box.results, box.line = tuner_box, size_box, {}, ""

    def render(*_: Any) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        box.line, fig = explore_tuner(make_config, tuner_box.value, size_box.value, size_label=size_label,
                                      cache=box.results, **explore_kwargs)
        output.clear_output(wait=True)
        with output:
            print(box.line)
            display(fig)
        plt.close(fig)

    tuner_box.observe(render, names="value")
    size_box.observe(render, names="value")
    render()
    return box
