"""Training curves: the loss of one or several ``History`` runs (smoothed) and an evaluation metric over steps.

matplotlib is imported inside the functions, so ``import swiftlite.viz`` stays free.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

__all__ = ["plot_history", "plot_evals"]


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
