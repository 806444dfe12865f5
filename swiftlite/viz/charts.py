"""Charts of numbers: a heatmap, grouped horizontal bars, and bars of one metric over bench rows.

matplotlib is imported inside the functions, so ``import swiftlite.viz`` stays free.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["heatmap", "grouped_bars", "bar_compare"]


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
    from matplotlib.transforms import offset_copy

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
    # Below the axes, a fixed distance under the tick labels and the axis label (in points, so a short
    # axes does not pull it up over them): never over a bar, nor over a neighbouring axes' legend.
    below = offset_copy(ax.transAxes, fig=ax.figure, y=-(34 if xlabel else 20), units="points")
    ax.legend(frameon=False, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=1)
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
