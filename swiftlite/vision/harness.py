"""Transfer a pretrained ViT to small downstream classification tasks (a tiny VTAB).

One run fine-tunes a fresh copy of the backbone on one task with one config and one seed::

    row = transfer("vit-tiny", LoRAConfig(r=4, target_modules=["q_proj", "v_proj"]), "colour", steps=60, seed=0)
    row["accuracy"], row["trainable_params"], row["peak_memory_bytes"], row["step_time_s"]

What a run does, in order:

1. ``load_task(task, shots, seed, image_size)``: the task's own train / test split from
   ``swiftlite.data.tasks.downstream_task`` (``shots`` examples per class; the few-shot sample
   depends on ``seed``); the image size is the backbone's (``model.config.image_size``).
2. ``load_backbone(name, label_names)``: ``ViTForImageClassification.from_pretrained`` with the
   task's ``num_labels`` / ``id2label``; transformers' own ``ignore_mismatched_sizes=True``
   re-initialises the classifier head when its size differs from the checkpoint's (seeded by
   ``torch.manual_seed(seed)`` just before).
3. ``prepare(model, config)``: which weights train.
   * ``config=None`` (:data:`FULL_FINE_TUNING`): every weight;
   * ``config=LINEAR_PROBE``: only the head (``Swift.prepare_model`` with no tuner and
     ``extra_state_keys=[head]``);
   * a tuner config (or ``{adapter_name: config}``): the tuner's weights **and the new head** (the
     head has to be learnt for a new label space; it is saved under ``extra_states/``).
4. ``swiftlite.bench.measure``: trainable parameters, peak training memory and the median step
   time on one training batch (weights restored afterwards).
5. ``swiftlite.train.train``: ``steps`` AdamW steps of cross-entropy, cosine schedule.
6. ``evaluate``: top-1 accuracy on the task's test split.

``run_suite`` repeats this over configs × tasks × seeds; ``summarize`` turns the runs into one row
per config (accuracy mean ± std over seeds of the task-averaged accuracy, as VTAB reports the
mean over its tasks); ``ResultsTable`` renders those rows in a notebook (HTML) or as markdown.
"""
from __future__ import annotations

import copy
import functools
import math
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .. import bench, zoo
from ..api import Swift, SwiftModel
from ..bench import count_parameters
from ..data.shapes import to_pixel_values
from ..data.tasks import downstream_task
from ..train import train

__all__ = ["LINEAR_PROBE", "FULL_FINE_TUNING", "load_task", "load_backbone", "backbone_image_size", "prepare",
           "classification_loss", "evaluate", "tuner_parameter_count", "match_budget", "transfer", "run_suite",
           "summarize", "ResultsTable", "format_mean_std"]

LINEAR_PROBE = "linear probe"  # config sentinel: train only the classifier head
FULL_FINE_TUNING = None  # config sentinel: train every weight
DEFAULT_HEAD = "classifier"  # ViTForImageClassification's head module


# ----------------------------------------------------------------------------------------------
# data and backbone
# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def load_task(task: str, shots: int | None = 10, seed: int = 0, image_size: int = 32, n_test: int = 200):
    """The task's ``DatasetDict(train, test)`` (cached: rendering the shapes world takes ~1 s)."""
    return downstream_task(task, shots=shots, n_test=n_test, image_size=image_size, seed=seed)


def _backbone_path(name_or_path: str) -> str:
    return str(zoo.path(name_or_path)) if name_or_path in zoo.names() else name_or_path


def backbone_image_size(name_or_path: str) -> int:
    """``config.image_size`` of a zoo backbone or a saved ViT folder (the quick build is 16 px)."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(_backbone_path(name_or_path)).image_size)


def load_backbone(name_or_path: str = "vit-tiny", label_names: Sequence[str] | None = None) -> nn.Module:
    """A ``ViTForImageClassification`` from the zoo (or a folder) with a head for ``label_names``.

    The head is re-initialised by transformers itself (``ignore_mismatched_sizes=True``) when the
    number of labels differs from the checkpoint's; with the same number it keeps the pretrained
    head's weights (and the new names). The load report that lists the re-initialised head, and the
    loading progress bar, are silenced: the mismatch is the point.
    """
    from transformers import ViTForImageClassification
    from transformers.utils import logging

    kwargs: dict[str, Any] = {}
    if label_names is not None:
        names = [str(n) for n in label_names]
        kwargs = dict(num_labels=len(names), id2label=dict(enumerate(names)),
                      label2id={n: i for i, n in enumerate(names)}, ignore_mismatched_sizes=True)
    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()  # a 72-tensor "Loading weights" bar per run would drown a notebook's output
    try:
        model = ViTForImageClassification.from_pretrained(_backbone_path(name_or_path), **kwargs)
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
    return model


def _head_keys(model: nn.Module, head: str) -> list[str]:
    try:
        module = model.get_submodule(head)
    except AttributeError:
        names = [n for n, _ in model.named_children()]
        raise ValueError(f"prepare(head={head!r}): the model has no module {head!r}; its children are {names}. "
                         f"Pass the name of the classification head.") from None
    if not any(True for _ in module.parameters()):
        raise ValueError(f"prepare(head={head!r}): that module has no parameters to train")
    return [rf"{head}\..*"]


def prepare(model: nn.Module, config: Any, head: str = DEFAULT_HEAD) -> nn.Module:
    """Make ``model`` trainable as ``config`` says (see the module docstring) and return it.

    ``None``: full fine-tuning (every parameter requires grad, the model is returned as is);
    ``LINEAR_PROBE``: a ``SwiftModel`` with no tuner whose only trainable weights are the head;
    a config or ``{adapter_name: config}``: a ``SwiftModel`` with the tuner(s) and the head trainable.
    """
    if config is FULL_FINE_TUNING:
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    if isinstance(config, str):
        if config != LINEAR_PROBE:
            raise ValueError(f"prepare(config={config!r}): expected None (full fine-tuning), "
                             f"{LINEAR_PROBE!r}, a tuner config or a {{adapter_name: config}} dict")
        return SwiftModel(model, None, extra_state_keys=_head_keys(model, head))
    return Swift.prepare_model(model, config, extra_state_keys=_head_keys(model, head))


def classification_loss(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of ``batch["label"]`` given ``batch["image"]`` (uint8 (B, H, W, 3) -> [-1, 1])."""
    return model(pixel_values=to_pixel_values(batch["image"]), labels=batch["label"]).loss


def evaluate(model: nn.Module, dataset, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on a ``datasets.Dataset`` with ``image`` and ``label`` columns."""
    data = dataset.with_format("numpy")[:]
    images, labels = data["image"], np.asarray(data["label"])
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for i in range(0, len(labels), batch_size):
                logits = model(pixel_values=to_pixel_values(images[i:i + batch_size])).logits
                correct += int((logits.argmax(-1).numpy() == labels[i:i + batch_size]).sum())
    finally:
        model.train(was_training)
    return correct / max(1, len(labels))


def tuner_parameter_count(config: Any, backbone: str | nn.Module = "vit-tiny", head: str = DEFAULT_HEAD) -> int:
    """Trainable weights a config adds to ``backbone``, the classifier head not counted (``None``: every
    backbone weight but the head's; ``LINEAR_PROBE``: 0)."""
    model = copy.deepcopy(backbone) if isinstance(backbone, nn.Module) else load_backbone(backbone)
    model = prepare(model, config, head=head)
    head_params = sum(p.numel() for p in model.get_submodule(
        head if config is FULL_FINE_TUNING else f"base_model.{head}").parameters())
    return count_parameters(model)[0] - head_params


def match_budget(make_config: Callable[[int], Any], sizes: Sequence[int], budget: int,
                 backbone: str | nn.Module = "vit-tiny") -> tuple[int, int]:
    """``(size, count)``: the size whose ``tuner_parameter_count(make_config(size))`` is nearest ``budget``."""
    counts = {size: tuner_parameter_count(make_config(size), backbone) for size in sizes}
    size = min(counts, key=lambda s: (abs(counts[s] - budget), s))
    return size, counts[size]


# ----------------------------------------------------------------------------------------------
# one run
# ----------------------------------------------------------------------------------------------


def _config_label(config: Any) -> str:
    if config is FULL_FINE_TUNING:
        return "full fine-tuning"
    if isinstance(config, str):
        return config
    if isinstance(config, Mapping):
        return "+".join(type(c).__name__.removesuffix("Config") for c in config.values())
    return type(config).__name__.removesuffix("Config")


def transfer(model_or_name: str | nn.Module, config: Any, task: str, steps: int, seed: int = 0, *,
             name: str | None = None, shots: int | None = 10, batch_size: int = 32, lr: float = 3e-3,
             weight_decay: float = 0.0, n_test: int = 200, measure_steps: int = 3, head: str = DEFAULT_HEAD,
             eval_every: int | None = None, measure: bool = True, progress: bool = False) -> dict[str, Any]:
    """Fine-tune on one task with one config and one seed; return one row (a dict).

    ``model_or_name``: a zoo name / saved folder (a fresh backbone is loaded with a head for the
    task's labels), or a ``ViTForImageClassification`` whose head already fits the task (a deep
    copy is tuned, the argument is left untouched). ``config``: ``None`` (full fine-tuning),
    :data:`LINEAR_PROBE`, a tuner config or ``{adapter_name: config}``. ``eval_every`` also records
    the test accuracy during training (``row["curve"]``: ``[(step, accuracy), ...]``). ``measure=False``
    skips ``bench.measure`` (peak_memory_bytes and step_time_s are then None; the counts stay).

    Row: name, task, seed, steps, lr, accuracy, trainable_params, total_params, trainable_percent,
    peak_memory_bytes, memory_method, step_time_s (median of ``measure_steps`` timed train steps),
    train_seconds (wall time of the whole training call), loss (per step), curve.
    """
    if steps < 1:
        raise ValueError(f"transfer(steps={steps}): expected a positive number of optimizer steps")
    if isinstance(model_or_name, nn.Module):
        image_size = int(getattr(getattr(model_or_name, "config", None), "image_size", 32))
    else:
        image_size = backbone_image_size(model_or_name)
    data = load_task(task, shots, seed, image_size, n_test)
    label_names = data["train"].features["label"].names
    torch.manual_seed(seed)  # the new head and the tuner weights start from the same RNG state per seed
    if isinstance(model_or_name, nn.Module):
        model = copy.deepcopy(model_or_name)
        n_out = getattr(getattr(model, "config", None), "num_labels", len(label_names))
        if n_out != len(label_names):
            raise ValueError(f"transfer(model_or_name=<model>): its head predicts {n_out} labels but task {task!r} "
                             f"has {len(label_names)}; pass the zoo name (e.g. 'vit-tiny') so a fitting head is "
                             f"made, or load_backbone(name, label_names)")
    else:
        model = load_backbone(model_or_name, label_names)
    model = prepare(model, config, head=head)
    train_set = data["train"].with_format("torch")
    bench_batch = train_set[:batch_size]
    row: dict[str, Any] = {"name": name or _config_label(config), "task": task, "seed": seed, "steps": steps, "lr": lr}
    if measure:
        measured = bench.measure(model, lambda: bench_batch, classification_loss, name=row["name"],
                                 steps=measure_steps, warmup=1)
    else:
        trainable, total = bench.count_parameters(model)
        measured = {"trainable_params": trainable, "total_params": total,
                    "trainable_percent": 100.0 * trainable / total,
                    "peak_memory_bytes": None, "memory_method": None, "step_time_s": None}
    row.update({k: measured[k] for k in ("trainable_params", "total_params", "trainable_percent",
                                         "peak_memory_bytes", "memory_method", "step_time_s")})
    def eval_fn(m: nn.Module) -> dict[str, float]:
        return {"accuracy": evaluate(m, data["test"])}

    start = time.perf_counter()
    history = train(model, train_set, classification_loss, steps=steps, batch_size=batch_size, lr=lr,
                    weight_decay=weight_decay, seed=seed, progress=progress,
                    eval_fn=eval_fn if eval_every else None, eval_every=eval_every)
    row["train_seconds"] = time.perf_counter() - start
    row["accuracy"] = evaluate(model, data["test"])
    curve = [(step, metrics["accuracy"]) for step, metrics in history.evals]  # train() also evaluates at the end
    row["loss"], row["curve"] = list(history.loss), curve
    return row


def run_suite(configs: Mapping[str, Any], tasks: Sequence[str], seeds: Sequence[int], steps: int, *,
              model: str = "vit-tiny", lr: float | Mapping[str, float] = 3e-3, measure: str = "first",
              progress: bool = True, **transfer_kwargs: Any) -> list[dict[str, Any]]:
    """``transfer`` for every config × task × seed (one row each, in that order).

    ``configs`` maps a display name to a config (``None`` = full fine-tuning, ``LINEAR_PROBE``);
    ``lr`` is one value or ``{name: lr}`` (every name needs one). ``measure="first"`` (default) runs
    ``bench.measure`` only in each config's first run (first task, first seed) and copies its peak
    memory and step time into the config's other rows (``row["measured_in"]`` says where they come
    from; only the head's size changes between tasks); ``measure="all"`` measures every run.
    """
    if measure not in ("first", "all"):
        raise ValueError(f"run_suite(measure={measure!r}): expected 'first' or 'all'")
    from tqdm.auto import tqdm

    if not configs or not tasks or not seeds:
        raise ValueError("run_suite: give at least one config, one task and one seed")
    if isinstance(lr, Mapping):
        missing = [n for n in configs if n not in lr]
        if missing:
            raise KeyError(f"run_suite(lr=...): no learning rate for {missing}; add them to the dict")
    rows = []
    bar = tqdm(total=len(configs) * len(tasks) * len(seeds), desc="transfer runs", disable=not progress)
    for name, config in configs.items():
        first: dict[str, Any] | None = None
        for task in tasks:
            for seed in seeds:
                bar.set_postfix_str(f"{name} / {task} / seed {seed}")
                row = transfer(model, config, task, steps, seed, name=name, measure=first is None or measure == "all",
                               lr=lr[name] if isinstance(lr, Mapping) else lr, **transfer_kwargs)
                if first is None:
                    first = row
                if row["peak_memory_bytes"] is None:
                    row.update({k: first[k] for k in ("peak_memory_bytes", "memory_method", "step_time_s")})
                row["measured_in"] = (first["task"], first["seed"]) if measure == "first" else (task, seed)
                rows.append(row)
                bar.update(1)
    bar.close()
    return rows


# ----------------------------------------------------------------------------------------------
# summary and table
# ----------------------------------------------------------------------------------------------


def summarize(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per config name (first-seen order) from ``run_suite`` rows.

    accuracy_mean / accuracy_std: for each seed the accuracy averaged over the tasks, then the mean
    and the sample standard deviation (ddof=1; 0 with one seed) of those per-seed means.
    per_task: ``{task: (mean, std)}`` over seeds. trainable_params / trainable_percent: mean over
    tasks (heads differ in size); peak_memory_bytes, step_time_s: medians over all runs.
    """
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    out = []
    for name, runs in by_name.items():
        tasks = list(dict.fromkeys(r["task"] for r in runs))
        seeds = list(dict.fromkeys(r["seed"] for r in runs))
        acc = {(r["task"], r["seed"]): r["accuracy"] for r in runs}
        per_seed = [np.mean([acc[t, s] for t in tasks if (t, s) in acc]) for s in seeds]
        per_task = {}
        for t in tasks:
            values = [acc[t, s] for s in seeds if (t, s) in acc]
            per_task[t] = (float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0)
        out.append({
            "name": name,
            "accuracy_mean": float(np.mean(per_seed)),
            "accuracy_std": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0,
            "per_task": per_task,
            "trainable_params": float(np.mean([r["trainable_params"] for r in runs])),
            "trainable_percent": float(np.mean([r["trainable_percent"] for r in runs])),
            "peak_memory_bytes": float(np.median([r["peak_memory_bytes"] for r in runs])),
            "step_time_s": float(np.median([r["step_time_s"] for r in runs])),
            "n_runs": len(runs), "n_seeds": len(seeds), "tasks": tasks,
        })
    return out


def format_mean_std(mean: float, std: float, scale: float = 100.0, digits: int = 1) -> str:
    """``"93.2 ± 1.1"`` (accuracies as percentages by default)."""
    if math.isnan(mean):
        return "nan"
    return f"{mean * scale:.{digits}f} ± {std * scale:.{digits}f}"


class ResultsTable:
    """``summarize`` rows as a table: HTML in a notebook, markdown in text.

    Columns: method, accuracy (mean ± std, %), one column per task (mean ± std, %, when
    ``per_task=True``), trainable parameters (count and % of the model), peak train memory (MiB)
    and step time (ms). ``extra`` adds ``{column: (row -> str)}``.
    """

    def __init__(self, summary: Sequence[Mapping[str, Any]], per_task: bool = True,
                 extra: Mapping[str, Callable[[Mapping[str, Any]], str]] | None = None) -> None:
        if not summary:
            raise ValueError("ResultsTable: no rows; pass summarize(run_suite(...))")
        self.summary = list(summary)
        tasks = list(self.summary[0]["tasks"]) if per_task else []
        self.columns = ["method", "accuracy % (mean ± std)", *tasks, "trainable params", "peak train memory",
                        "step time", *(extra or {})]
        self.cells: list[list[str]] = []
        for r in self.summary:
            task_cells = [format_mean_std(*r["per_task"][t]) if t in r["per_task"] else "" for t in tasks]
            self.cells.append([
                str(r["name"]), format_mean_std(r["accuracy_mean"], r["accuracy_std"]), *task_cells,
                f"{r['trainable_params']:,.0f} ({r['trainable_percent']:.2f} %)",
                f"{r['peak_memory_bytes'] / 2**20:.2f} MiB", f"{r['step_time_s'] * 1e3:.1f} ms",
                *[fn(r) for fn in (extra or {}).values()]])

    def to_markdown(self) -> str:
        def esc(text: str) -> str:
            return text.replace("|", "\\|")

        lines = ["| " + " | ".join(map(esc, self.columns)) + " |", "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(map(esc, row)) + " |" for row in self.cells]
        return "\n".join(lines)

    def _repr_markdown_(self) -> str:
        return self.to_markdown()

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in self.cells)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def __str__(self) -> str:
        return self.to_markdown()

    def __repr__(self) -> str:
        return self.to_markdown()
