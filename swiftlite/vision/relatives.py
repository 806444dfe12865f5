"""The relatives (DiffFit, SCT, MoSA, 1-bit adapters, Hydra, SHiRA) on the tiny VTAB of tutorial 04.

Three things the plain harness does not do:

* ``sct_config``: SCT's salient channels come from data, per task and few-shot sample, so its config
  is built from the task's training split (``select_salient_channels``) before the run;
* ``run_relatives``: ``run_suite`` where a config may also be a function ``(task, seed) -> config``;
* ``bytes_on_disk``: what an adapter's weights take in its saved file (the 1-bit adapter's packed
  signs, everyone else's float32 tensors; the classifier head, the same for every method, left out).
"""
from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping, Sequence

import torch

from ..data.shapes import to_pixel_values
from ..tuners.sct import SCTConfig, select_salient_channels
from . import harness

__all__ = ["sct_config", "run_relatives", "bytes_on_disk", "cost_accuracy_scatter"]


def _pixel_batches(task: str, seed: int, shots: int | None, image_size: int, batch_size: int = 64):
    """The task's training split as {pixel_values, labels} batches (what select_salient_channels reads)."""
    data = harness.load_task(task, shots, seed, image_size)["train"].with_format("numpy")[:]
    for i in range(0, len(data["label"]), batch_size):
        yield {"pixel_values": to_pixel_values(data["image"][i:i + batch_size]),
               "labels": torch.as_tensor(data["label"][i:i + batch_size])}


def sct_config(task: str, seed: int = 0, *, backbone: str = "vit-tiny", shots: int | None = 10, top_k: int = 16,
               target_modules: str = r"vit\.layers\.\d+", return_scores: bool = False, **fields: Any):
    """An ``SCTConfig`` whose salient channels are chosen on ``task``'s few-shot training split (the
    frozen pretrained backbone, one pass). With ``return_scores`` also the per-channel scores."""
    model = harness.load_backbone(backbone)
    batches = _pixel_batches(task, seed, shots, harness.backbone_image_size(backbone))
    channels, scores = select_salient_channels(model, batches, target_modules, top_k, return_scores=True)
    config = SCTConfig(target_modules=target_modules, salient_channels=channels, top_k=top_k, **fields)
    return (config, scores) if return_scores else config


def run_relatives(configs: Mapping[str, Any], tasks: Sequence[str], seeds: Sequence[int], steps: int, *,
                  lr: float | Mapping[str, float] = 3e-3, progress: bool = True, **kwargs: Any) -> list[dict[str, Any]]:
    """``harness.run_suite`` over ``configs``; a value that is a function ``(task, seed) -> config`` is
    called for each run (SCT: ``lambda task, seed: sct_config(task, seed)``). Rows as ``run_suite``'s."""
    static = {n: c for n, c in configs.items() if not callable(c)}
    rows = harness.run_suite(static, tasks, seeds, steps, lr=lr, progress=progress, **kwargs) if static else []
    for name, make in configs.items():
        if name in static:
            continue
        first = None
        for task in tasks:
            for seed in seeds:
                row = harness.transfer(kwargs.get("model", "vit-tiny"), make(task, seed), task, steps, seed, name=name,
                                       measure=first is None, lr=lr[name] if isinstance(lr, Mapping) else lr,
                                       **{k: v for k, v in kwargs.items() if k != "model"})
                first = first or row
                if row["peak_memory_bytes"] is None:
                    row.update({k: first[k] for k in ("peak_memory_bytes", "memory_method", "step_time_s")})
                row["measured_in"] = (first["task"], first["seed"])
                rows.append(row)
    order = list(configs)
    return sorted(rows, key=lambda r: order.index(r["name"]))  # stable: tasks and seeds keep their order


def bytes_on_disk(config: Any, backbone: str = "vit-tiny", head: str = harness.DEFAULT_HEAD) -> int:
    """Bytes of the tuner's weights as ``save_pretrained`` writes them (``adapter_model.safetensors`` of
    the adapter; the head, saved under extra_states/ for every method, is not counted). Full
    fine-tuning: the backbone's own weights (head left out) in one safetensors file; linear probe: 0."""
    from safetensors.torch import save_file

    if isinstance(config, str) and config == harness.LINEAR_PROBE:
        return 0
    model = harness.load_backbone(backbone)
    with tempfile.TemporaryDirectory() as folder:
        if config is harness.FULL_FINE_TUNING:
            path = os.path.join(folder, "model.safetensors")
            save_file({k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith(head + ".")}, path)
            return os.path.getsize(path)
        model = harness.prepare(model, config, head=head)
        model.save_pretrained(folder)
        return os.path.getsize(os.path.join(folder, "default", "adapter_model.safetensors"))



def cost_accuracy_scatter(summary: Sequence[Mapping[str, Any]], cost: Mapping[str, float], xlabel: str, ax=None,
                          highlight: Sequence[str] = (), highlight_label: str = "the relatives", title: str | None = None):
    """Accuracy (%, mean ± std over seeds) against a cost per method (``{name: cost}``, log axis). A
    method whose cost is 0 (the linear probe: no weight beyond the head) is drawn as a dashed line."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    shown = [r for r in summary if cost[r["name"]] > 0]
    for r in shown:
        x, y, err = cost[r["name"]], 100 * r["accuracy_mean"], 100 * r["accuracy_std"]
        ax.errorbar(x, y, yerr=err, fmt="o", capsize=3, markersize=6,
                    color="#dd8452" if r["name"] in highlight else "#4c72b0")
    handles = [Line2D([], [], marker="o", linestyle="", color="#dd8452", label=highlight_label),
               Line2D([], [], marker="o", linestyle="", color="#4c72b0", label="baselines")]
    for r in summary:
        if cost[r["name"]] == 0:
            ax.axhline(100 * r["accuracy_mean"], color="gray", linestyle="--", linewidth=1)
            handles.append(Line2D([], [], color="gray", linestyle="--", label=f"{r['name']} (cost 0)"))
    ax.set_xscale("log")
    ax.margins(x=0.3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy, mean over tasks (%)\n(error bar: std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper left")
    if title:
        ax.set_title(title)
    _place_labels(ax, [(r["name"], cost[r["name"]], 100 * r["accuracy_mean"]) for r in shown])
    return ax


# where a point's name may go, in points from the marker: right, left, then above / below on each side
_LABEL_SPOTS = [(7, 0, "left"), (-7, 0, "right"), (7, 8, "left"), (-7, 8, "right"), (7, -8, "left"),
                (-7, -8, "right"), (7, 16, "left"), (-7, 16, "right"), (7, -16, "left"), (-7, -16, "right")]


def _place_labels(ax, points) -> None:
    """Name each point at the first spot of `_LABEL_SPOTS` whose text box clears the names placed so
    far, the legend and the tick labels (greedy, highest points first); a name with no free spot keeps
    the first. The axes' limits must be final: set them (or share them) before calling."""
    ax.figure.canvas.draw()  # settles the axes' limits (autoscaling is lazy) and lays out the tick labels
    renderer = ax.figure.canvas.get_renderer()
    taken = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() else []
    taken += [t.get_window_extent(renderer) for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    for name, x, y in sorted(points, key=lambda p: -p[2]):
        for dx, dy, ha in _LABEL_SPOTS:
            label = ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7, ha=ha,
                                va="center")
            box = label.get_window_extent(renderer).padded(1)
            if not any(box.overlaps(other) for other in taken):
                break
            label.remove()
        else:
            dx, dy, ha = _LABEL_SPOTS[0]
            label = ax.annotate(name, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=7, ha=ha,
                                va="center")
            box = label.get_window_extent(renderer)
        taken.append(box)
