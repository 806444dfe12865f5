"""Measured figures for comparing tuners: parameters, step time, throughput, peak training memory.

Every number here comes from running the model, not from a formula. :func:`measure` returns one
row (a dict) per model; :func:`compare` adds ratios against a baseline row; :func:`to_markdown`
and ``swiftlite.viz`` turn rows into tables and bar charts.

Peak training memory
--------------------
* CUDA: ``torch.cuda.max_memory_allocated`` over the timed train steps (the caching allocator's
  peak, after ``reset_peak_memory_stats``). ``memory_method = "cuda-allocator-peak"``.
* CPU: PyTorch has no allocator peak on CPU and process RSS is too noisy for small models, so we
  count the bytes that training must hold at the moment backward starts::

      M = Σ params + Σ saved-for-backward + Σ grads(trainable) + Σ optimizer state(trainable)

  Saved-for-backward tensors are caught with ``torch.autograd.graph.saved_tensors_hooks`` during
  one extra train step, deduplicated by storage (``untyped_storage().data_ptr()``), and storages
  that belong to parameters are not counted twice. ``memory_method =
  "saved-for-backward+params+grads+optimizer-state"``.

  Limits: it is a lower bound on the true peak. It ignores transient tensors that forward frees
  before backward (not saved), backward's own temporaries (activation gradients, workspaces),
  buffers, the input batch unless an op saves it, allocator caching/fragmentation and Python
  overhead. It does capture what parameter-efficient methods change: frozen layers whose outputs
  need no gradient save nothing, so a Bypass/side network that keeps gradients out of the
  backbone scores lower, and a larger batch saves proportionally more activations.

``measure`` runs real optimizer steps; it snapshots the trainable parameters and buffers first and
restores them (and the train/eval mode) at the end, so the model leaves as it came.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from .train import trainable_param_groups

__all__ = ["count_parameters", "measure", "time_forward", "compare", "to_markdown", "DEFAULT_RATIO_METRICS"]

DEFAULT_RATIO_METRICS = (
    "trainable_params",
    "total_params",
    "trainable_percent",
    "step_time_s",
    "throughput",
    "peak_memory_bytes",
)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts; shared (tied) parameters are counted once."""
    trainable = total = 0
    for p in model.parameters():  # nn.Module.parameters() already deduplicates tied weights
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def _model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, dict):
        return type(batch)({k: _to_device(v, device) for k, v in batch.items()})
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _batch_size(batch: Any) -> int:
    """Size of dim 0 of the first tensor found in ``batch`` (dict values in order, then sequences)."""
    if isinstance(batch, torch.Tensor) and batch.dim() >= 1:
        return batch.shape[0]
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for v in values:
        n = _batch_size(v)
        if n:
            return n
    return 0


def _default_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    if not isinstance(batch, dict):
        raise TypeError(
            f"measure(loss_fn=None) calls model(**batch).loss, which needs dict batches; got {type(batch).__name__}. "
            "Pass loss_fn=lambda model, batch: ..."
        )
    return model(**batch).loss


def _make_optimizer(model: nn.Module, optimizer) -> torch.optim.Optimizer:
    lr = 1e-4  # the value does not change time or memory; small so the weights move little
    groups = trainable_param_groups(model, lr=lr, weight_decay=0.0)
    if optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if callable(optimizer):
        return optimizer(groups, lr=lr)
    raise ValueError(f"measure(optimizer={optimizer!r}): expected 'adamw', 'sgd' or an optimizer class/factory.")


def _storage_key_and_bytes(t: torch.Tensor) -> tuple[Any, int]:
    try:
        storage = t.untyped_storage()
        return (storage.device, storage.data_ptr()), storage.nbytes()
    except (RuntimeError, NotImplementedError):  # sparse / exotic tensors without a plain storage
        return ("id", id(t)), t.numel() * t.element_size()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_iqr(samples: Sequence[float]) -> tuple[float, float]:
    q25, q50, q75 = np.percentile(np.asarray(samples, dtype=float), [25, 50, 75])
    return float(q50), float(q75 - q25)


# ----------------------------------------------------------------------------------------------
# measure
# ----------------------------------------------------------------------------------------------


def _saved_for_backward_bytes(run_step: Callable[[], None], params: Iterable[torch.Tensor]) -> int:
    """Bytes of distinct storages autograd saves for backward during ``run_step()`` (parameters excluded)."""
    seen = {_storage_key_and_bytes(p)[0] for p in params}
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key, nbytes = _storage_key_and_bytes(t)
        if key not in seen:
            seen.add(key)
            total += nbytes
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run_step()
    return total


def measure(
    model: nn.Module,
    batch_fn: Callable[[], Any],
    loss_fn: Callable[[nn.Module, Any], torch.Tensor] | None = None,
    *,
    name: str = "",
    steps: int = 10,
    warmup: int = 3,
    optimizer: str | Callable[..., torch.optim.Optimizer] = "adamw",
) -> dict[str, Any]:
    """Benchmark full train steps (forward, backward, optimizer step) of ``model``.

    ``batch_fn() -> batch`` makes each batch (outside the timed region; moved to the model's
    device); ``loss_fn(model, batch) -> scalar`` defaults to ``model(**batch).loss``. After
    ``warmup`` untimed steps, ``steps`` steps are timed and the median and inter-quartile range
    reported. Memory: see the module docstring. The trainable weights, buffers and train/eval
    mode are restored at the end.

    Returns a row: name, trainable_params, total_params, trainable_percent, step_time_s,
    step_time_iqr_s, throughput (samples/s, batch size = dim 0 of the batch's first tensor),
    peak_memory_bytes, memory_parts_bytes (CPU: the four terms of the count above, by name; CUDA:
    None), memory_method, device.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"measure(): need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}.")
    loss_fn = loss_fn or _default_loss
    device = _model_device(model)
    trainable, total = count_parameters(model)
    opt = _make_optimizer(model, optimizer)
    trainable_params = [p for g in opt.param_groups for p in g["params"]]

    was_training = model.training
    snapshot = {id(p): p.detach().clone() for p in trainable_params}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]

    def train_step(batch) -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch)
        loss.backward()
        opt.step()

    model.train()
    try:
        for _ in range(warmup):
            train_step(_to_device(batch_fn(), device))

        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
        times, batch_size = [], 0
        for _ in range(steps):
            batch = _to_device(batch_fn(), device)
            batch_size = batch_size or _batch_size(batch)
            _sync(device)
            t0 = time.perf_counter()
            train_step(batch)
            _sync(device)
            times.append(time.perf_counter() - t0)

        parts = None
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device)
            method = "cuda-allocator-peak"
        else:
            # one more step, untimed, with hooks that count what autograd keeps for backward
            batch = _to_device(batch_fn(), device)
            all_params = list(model.parameters())
            saved = _saved_for_backward_bytes(lambda: train_step(batch), all_params)
            param_bytes = sum(p.numel() * p.element_size() for p in all_params)
            grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in trainable_params if p.grad is not None)
            state_bytes = sum(
                v.numel() * v.element_size()
                for p in trainable_params
                for v in opt.state.get(p, {}).values()
                if isinstance(v, torch.Tensor)
            )
            peak = param_bytes + saved + grad_bytes + state_bytes
            parts = {"parameters": param_bytes, "saved for backward": saved, "gradients": grad_bytes,
                     "optimizer state": state_bytes}
            method = "saved-for-backward+params+grads+optimizer-state"
    finally:
        with torch.no_grad():
            for p in trainable_params:
                p.copy_(snapshot[id(p)])
                p.grad = None
            for b, value in buffers:
                b.copy_(value)
        model.train(was_training)

    median, iqr = _median_iqr(times)
    return {
        "name": name,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_percent": 100.0 * trainable / total if total else 0.0,
        "step_time_s": median,
        "step_time_iqr_s": iqr,
        "throughput": batch_size / median if median > 0 else float("nan"),
        "peak_memory_bytes": int(peak),
        "memory_parts_bytes": parts,
        "memory_method": method,
        "device": str(device),
    }


def time_forward(model: nn.Module, batch_fn: Callable[[], Any], steps: int = 10, warmup: int = 3) -> float:
    """Median seconds of one inference forward pass (eval mode, ``torch.no_grad``).

    A dict batch is called as ``model(**batch)``, a tuple/list as ``model(*batch)``, a tensor as
    ``model(batch)``. Batches are made outside the timed region; the train/eval mode is restored.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"time_forward(): need steps >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}.")
    device = _model_device(model)

    def forward(batch):
        if isinstance(batch, dict):
            return model(**batch)
        if isinstance(batch, (list, tuple)):
            return model(*batch)
        return model(batch)

    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + steps):
                batch = _to_device(batch_fn(), device)
                _sync(device)
                t0 = time.perf_counter()
                forward(batch)
                _sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return _median_iqr(times)[0]


# ----------------------------------------------------------------------------------------------
# tables
# ----------------------------------------------------------------------------------------------


def compare(rows: Sequence[dict], baseline: str, metrics: Sequence[str] | None = None) -> list[dict]:
    """Copies of ``rows`` with ``<metric>_ratio = row[metric] / baseline_row[metric]`` added.

    ``baseline`` is the ``name`` of the reference row (its ratios are 1). ``metrics`` defaults to
    :data:`DEFAULT_RATIO_METRICS`, keeping those present in the baseline row. A zero or missing
    baseline value gives ``nan``.
    """
    by_name = {r.get("name"): r for r in rows}
    if baseline not in by_name:
        raise KeyError(f"compare(baseline={baseline!r}): no row has that name; names are {list(by_name)}.")
    base = by_name[baseline]
    metrics = [m for m in (metrics or DEFAULT_RATIO_METRICS) if m in base]
    out = []
    for row in rows:
        row = dict(row)
        for m in metrics:
            b, v = base.get(m), row.get(m)
            ok = isinstance(b, (int, float)) and isinstance(v, (int, float)) and b != 0
            row[f"{m}_ratio"] = v / b if ok else float("nan")
        out.append(row)
    return out


def _format_cell(column: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if column.endswith("_bytes") and isinstance(value, (int, float)):
        return f"{value / 2**20:.2f} MiB"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3g}" if column.endswith("_ratio") else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def to_markdown(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A markdown table of ``rows``; ``columns`` defaults to the keys of the first row (except
    dict-valued ones such as ``memory_parts_bytes``).

    Integers get thousands separators, ``*_bytes`` columns are shown in MiB, floats with 4
    significant digits (ratios with 3).
    """
    if not rows:
        return ""
    columns = list(columns or [k for k, v in rows[0].items() if not isinstance(v, dict)])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_format_cell(c, row.get(c)) for c in columns) + " |")
    return "\n".join(lines)
