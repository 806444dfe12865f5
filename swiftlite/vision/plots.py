"""Figures and the tuner explorer widget for vision transfer results.

Inputs are the rows of ``swiftlite.vision.harness.run_suite`` / ``summarize``. matplotlib and
ipywidgets are imported inside the functions. Figures are saved with ``swiftlite.viz.save_figure``.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .. import viz
from .harness import transfer

__all__ = ["memory_accuracy_scatter", "ranked_methods", "task_heatmap", "learning_curves", "paper_vs_ours",
           "explore_tuner", "tuner_explorer", "res_tuning_flow", "bypass_flow", "res_attn_flow"]

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


def ranked_methods(summary: Sequence[Mapping[str, Any]], ax=None, title: str | None = None,
                   highlight: Sequence[str] = (), highlight_label: str = "highlighted",
                   reference: str | None = None, chance: float | None = None, memory: bool = True):
    """One row per method, sorted by accuracy: mean accuracy (%) with its std over seeds as an error bar,
    the method's name as the row label and, when ``memory``, its peak training memory and trainable
    weights printed in a column right of the axes (one row each, so no two labels can collide).
    ``reference`` (a method name) draws a dashed vertical line at its accuracy; ``chance`` (a fraction)
    a dotted one. Returns the axes."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not summary:
        raise ValueError("ranked_methods: no rows; pass summarize(run_suite(...))")
    names = [r["name"] for r in summary]
    if reference is not None and reference not in names:
        raise ValueError(f"ranked_methods(reference={reference!r}): no such method; use one of {names}")
    rows = sorted(summary, key=lambda r: r["accuracy_mean"])
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.4))
    for y, r in enumerate(rows):
        color = "#dd8452" if r["name"] in highlight else "#4c72b0"
        ax.errorbar(100 * r["accuracy_mean"], y, xerr=100 * r["accuracy_std"], fmt="o", color=color, capsize=3)
    ax.set_yticks(range(len(rows)), labels=[r["name"] for r in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) - 0.4)
    n_seeds = max(int(r.get("n_seeds", 1)) for r in rows)
    ax.set_xlabel(f"test accuracy, mean over tasks (%); error bar: std over {n_seeds} seeds")
    ax.grid(axis="x", alpha=0.3)
    handles = []
    if highlight:
        handles.append(Line2D([], [], marker="o", linestyle="", color="#dd8452", label=highlight_label))
    if reference is not None:
        value = 100 * next(r["accuracy_mean"] for r in rows if r["name"] == reference)
        ax.axvline(value, color="0.4", linestyle="--", lw=1)
        handles.append(Line2D([], [], color="0.4", linestyle="--", label=f"{reference} ({value:.1f} %)"))
    if chance is not None:
        ax.axvline(100 * chance, color="0.6", linestyle=":", lw=1.2)
        handles.append(Line2D([], [], color="0.6", linestyle=":", label=f"chance ({100 * chance:.1f} %)"))
    lo = min(100 * (r["accuracy_mean"] - r["accuracy_std"]) for r in rows)
    hi = max(100 * (r["accuracy_mean"] + r["accuracy_std"]) for r in rows)
    lo = min(lo, 100 * chance) if chance is not None else lo
    pad = max(1.0, 0.08 * (hi - lo))
    ax.set_xlim(lo - pad, hi + pad)
    if memory:
        for y, r in enumerate(rows):
            ax.annotate(f"{r['peak_memory_bytes'] / 2**20:6.1f} MiB · {r['trainable_params']:>9,.0f}", (1.02, y),
                        xycoords=("axes fraction", "data"), fontsize=7, va="center", family="monospace")
        ax.annotate("peak train memory · trainable", (1.02, len(rows) - 0.35), xycoords=("axes fraction", "data"),
                    fontsize=7, va="bottom", fontweight="bold")
    if handles:  # in an empty row under the lowest method, so it covers no error bar
        ax.set_ylim(-1.6, len(rows) - 0.4)
        ax.legend(handles=handles, fontsize=7, frameon=False, loc="lower center", ncol=len(handles))
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


# ----------------------------------------------------------------------------------------------
# data-flow figures (swiftlite.viz.FlowDiagram), labels read from the real model
# ----------------------------------------------------------------------------------------------


def _tokens(model: Any) -> int:
    """Tokens per image of a transformers ViT: (image_size / patch_size)² patches + the [CLS] token."""
    cfg = model.config
    return (cfg.image_size // cfg.patch_size) ** 2 + 1


def res_tuning_flow(model: Any, adapter_length: int, num_tokens: int, layer: int = 0):
    """Res-Tuning's data flow on one block of a transformers ViT, as the paper draws it: the Res-Adapter
    beside the frozen FFN (``x' = OP(x) + T(x)``, a sum node) and, below, prefix tuning unbound into the
    frozen attention plus a prefix attention, mixed by λ (Res-Prefix keeps the branch, drops λ).
    Widths, token counts and module names come from ``model``. Returns the ``FlowDiagram``."""
    cfg = model.config
    d, tokens, hidden = cfg.hidden_size, _tokens(model), cfg.intermediate_size
    name = f"vit.layers.{layer}"
    fd = viz.FlowDiagram(f"Res-Tuning on {name} of the real ViT: x' = OP(x) + T(x)")
    fd.box("x", f"x\n(B, {tokens}, {d})", at=(0, 0))
    fd.box("op", f"OP: {name}.mlp (frozen)\n{d} → {hidden} → {d}", at=(3.6, 1.0), kind="frozen")
    fd.box("t", f"T: Res-Adapter\n{d} → {adapter_length} → {d}, W₂ = 0", at=(3.6, -1.0), kind="tuner")
    fd.node("sum", "+", at=(6.6, 0))
    fd.box("y", f"x'\n(B, {tokens}, {d})", at=(8.2, 0))
    fd.arrow("x", "op").arrow("x", "t").arrow("op", "sum", "OP(x)").arrow("t", "sum", "T(x)").arrow("sum", "y")
    heads = cfg.num_attention_heads
    fd.box("x2", f"x\n(B, {tokens}, {d})", at=(0, -4.0))
    fd.box("att", f"Attn(Q, K, V): {name}.attention\n(frozen, {heads} heads)", at=(3.6, -3.0), kind="frozen")
    fd.box("pre", f"Attn(Q, K_pre, V_pre)\n{num_tokens} prefixes per head", at=(3.6, -5.0), kind="tuner")
    fd.node("sum2", "+", at=(6.6, -4.0))
    fd.box("y2", "prefix tuning's output\n(Res-Prefix: drop λ)", at=(8.6, -4.0))
    fd.arrow("x2", "att").arrow("x2", "pre").arrow("att", "sum2", "× (1 − λ)").arrow("pre", "sum2", "× λ")
    fd.arrow("sum2", "y2")
    return fd


def bypass_flow(model: Any, adapter_length: int = 32):
    """Res-Tuning-Bypass's data flow on a transformers ViT: the frozen backbone on top, detached probes
    (dashed) down to a side network of lateral and vertical Res-Adapters, one block per backbone layer,
    whose output x_N replaces the input of the final LayerNorm. Returns the ``FlowDiagram``."""
    cfg = model.config
    d, tokens, depth = cfg.hidden_size, _tokens(model), cfg.num_hidden_layers
    step = 3.4
    fd = viz.FlowDiagram(f"Res-Tuning-Bypass on the real ViT ({depth} blocks, tokens (B, {tokens}, {d}))")
    fd.box("emb", "vit.embeddings", at=(0, 3.2), kind="frozen")
    fd.box("x0", "x₀", at=(0, 0), width=0.8)
    fd.arrow("emb", "x0", "sg", style="detached")
    previous, top = "x0", "emb"
    for i in range(1, depth + 1):
        x = i * step
        fd.box(f"L{i}", f"vit.layers.{i - 1}", at=(x, 3.2), kind="frozen")
        fd.arrow(top, f"L{i}")
        fd.box(f"lat{i}", f"lateral{i}\n{d}→{adapter_length}→{d}", at=(x, 1.6), kind="tuner")
        fd.arrow(f"L{i}", f"lat{i}", f"sg[s{i}]", style="detached")
        fd.box(f"ver{i}", f"vertical{i}\n{d}→{adapter_length}→{d}", at=(x - 1.6, -1.2), kind="tuner")
        fd.node(f"sum{i}", "+", at=(x, 0))
        fd.arrow(previous, f"ver{i}").arrow(f"ver{i}", f"sum{i}").arrow(f"lat{i}", f"sum{i}")
        previous, top = f"sum{i}", f"L{i}"
    x = (depth + 1) * step
    fd.box("ln", "vit.layernorm\n+ classifier", at=(x, 3.2), kind="frozen")
    fd.box("xn", f"x{depth} replaces\nits input", at=(x, 0))
    fd.arrow(previous, "xn").arrow("xn", "ln")  # the last block's own output is not read by the LayerNorm
    return fd


def res_attn_flow(model: Any, r: int, num_heads: int, layer: int = 0):
    """Res-Attn's data flow beside the frozen attention of one ViT block: x → A_q, A_k, A_v (d → r), a
    softmax attention of ``num_heads`` heads inside the rank-r space, A_o (r → d, zero at init), summed
    with the frozen attention's output. Returns the ``FlowDiagram``."""
    cfg = model.config
    d, tokens = cfg.hidden_size, _tokens(model)
    name = f"vit.layers.{layer}.attention"
    fd = viz.FlowDiagram(f"Res-Attn beside {name} (r = {r}, {num_heads} heads of width {r // num_heads})")
    fd.box("x", f"x\n(B, {tokens}, {d})", at=(0, 0))
    fd.box("op", f"OP: {name} (frozen)\n{cfg.num_attention_heads} heads, {d} → {d}", at=(5.0, 1.6), kind="frozen")
    fd.box("qkv", f"A_q, A_k, A_v\n{d} → {r} each", at=(2.9, -1.4), kind="tuner")
    fd.box("attn", f"softmax(Q_h K_hᵀ / √{r // num_heads}) V_h\n(B, {num_heads}, {tokens}, {r // num_heads})",
           at=(6.1, -1.4))
    fd.box("ao", f"A_o: {r} → {d}\n(A_o = 0 at init)", at=(9.2, -1.4), kind="tuner")
    fd.node("sum", "+", at=(9.2, 0.4))
    fd.box("y", f"x'\n(B, {tokens}, {d})", at=(11.0, 0.4))
    fd.arrow("x", "op").arrow("x", "qkv").arrow("qkv", "attn", "Q, K, V").arrow("attn", "ao", "concat_h")
    fd.arrow("op", "sum", "OP(x)").arrow("ao", "sum", "ResAttn(x)").arrow("sum", "y")
    return fd
