"""The one training loop of swiftlite, built on 🤗 Accelerate.

Every tutorial and the zoo call :func:`train`; nobody writes their own loop. One optimizer step is

    g      = (1/A) Σ_{a=1..A} ∇_θ L(f_θ(x_a))       # gradient accumulation over A micro-batches
    g      = g · min(1, c / ‖g‖₂)                    # clip the global gradient norm to c
    θ      = AdamW(θ, g, η_t, λ)                     # only parameters with requires_grad
    η_t    = η · w(t) · s(t)                         # linear warm-up w, then a cosine/linear/constant s
    θ_ema  = β θ_ema + (1 - β) θ                     # optional exponential moving average

Accelerate prepares the model, optimizer and data loader, so the same code runs on CPU, one GPU, or
several processes; mixed precision ("fp16"/"bf16") is Accelerate's autocast. The learning-rate
schedule is stepped here once per optimizer step (it is *not* handed to ``accelerator.prepare``,
which would step it once per process), so ``steps`` always means optimizer steps of this process.

Several processes (data parallel, DDP). Start the unchanged script with
``torchrun --standalone --nproc_per_node N script.py`` or ``accelerate launch --multi_gpu
--num_processes N script.py``; without GPUs, :func:`train` asks Accelerate for CPU processes (gloo), which it would
otherwise set up as N independent single-process runs. ``accelerate launch --cpu --num_processes N``
starts a single process (its CPU path needs MPI): :func:`train` warns when a launch meant for
several processes ends up alone. With N processes, each takes its own ``batch_size`` rows per
micro-batch (a global batch of N·batch_size, gradients averaged by DDP), ``loss_fn`` gets the model
itself (DDP wraps the whole loss computation), the parameters of inactive adapters are frozen while
training (DDP waits for a gradient of every trainable parameter), and process 0 alone writes
checkpoints.

Checkpoints hold tuner weights only: a swiftlite ``SwiftModel`` writes its adapters with
``save_pretrained``; any other module writes just its ``requires_grad`` parameters to
``trainable.safetensors`` (atomically: temp file in the same folder, then ``os.replace``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .api import SwiftModel
from .core.io import StagedWrite

LossFn = Callable[[nn.Module, Any], torch.Tensor]

__all__ = ["History", "train", "make_optimizer", "trainable_param_groups", "lr_lambda", "save_trainable"]


# ----------------------------------------------------------------------------------------------
# History
# ----------------------------------------------------------------------------------------------


@dataclass
class History:
    """What :func:`train` measured, one entry per optimizer step.

    ``loss[t]`` is the mean loss over the micro-batches of step ``t`` (averaged over processes),
    ``lr[t]`` the learning rate of the first param group used for that step, ``grad_norm[t]`` the
    global gradient norm before clipping (empty when clipping is off), ``evals`` the
    ``(step, metrics)`` pairs returned by ``eval_fn``.
    """

    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    evals: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    grad_norm: list[float] = field(default_factory=list)
    ema_decay: float | None = None  # set when the model ends with EMA weights copied in

    def smoothed_loss(self, beta: float = 0.9) -> list[float]:
        """Debiased exponential moving average of the loss (as TensorBoard's smoothing).

        m_t = β m_{t-1} + (1-β) loss_t ;  smoothed_t = m_t / (1 - β^t)
        """
        out, m = [], 0.0
        for t, value in enumerate(self.loss, start=1):
            m = beta * m + (1 - beta) * value
            out.append(m / (1 - beta**t))
        return out

    def plot(self, ax=None, beta: float = 0.9, label: str | None = None):
        """Draw the loss curve (faint) and its smoothed version on ``ax`` (a new figure if None)."""
        import matplotlib.pyplot as plt  # lazy: importing swiftlite.train must not need matplotlib

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3))
        x = range(1, len(self.loss) + 1)
        (line,) = ax.plot(x, self.loss, alpha=0.3, linewidth=1)
        ax.plot(x, self.smoothed_loss(beta), color=line.get_color(), label=label or "loss (smoothed)")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.legend()
        return ax


# ----------------------------------------------------------------------------------------------
# Optimizer and schedule
# ----------------------------------------------------------------------------------------------


def trainable_param_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """Param groups to optimize: the model's own ``create_optimizer_param_groups`` if it has one
    (a SwiftModel does; LoRA+ gives ``lora_B`` a larger lr there), else one group with every
    parameter that requires grad. Frozen parameters are dropped from every group."""
    if hasattr(model, "create_optimizer_param_groups"):
        groups = model.create_optimizer_param_groups(lr=lr, weight_decay=weight_decay)
        groups = [dict(g) for g in groups]
        for g in groups:
            g["params"] = [p for p in g["params"] if p.requires_grad]
        groups = [g for g in groups if g["params"]]
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": params}] if params else []
    if not groups:
        raise ValueError(
            "train(): the model has no parameters with requires_grad=True, so there is nothing to train. "
            "Wrap it with Swift.prepare_model(model, config) or set requires_grad on the parts to tune "
            "(the adapters of a SwiftModel that are not active are not trained: activate them first)."
        )
    return groups


def make_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.0,
    optimizer: type[torch.optim.Optimizer] | Callable[..., torch.optim.Optimizer] | torch.optim.Optimizer | None = None,
    param_groups: list[dict] | None = None,
) -> torch.optim.Optimizer:
    """Build the optimizer over :func:`trainable_param_groups`.

    ``optimizer`` may be None (AdamW), an optimizer class or factory called as
    ``optimizer(param_groups, lr=lr, weight_decay=weight_decay)``, or an already built
    ``torch.optim.Optimizer`` (returned as is). ``param_groups`` replaces the default groups
    (e.g. :func:`swiftlite.llm.multimodal.multimodal_param_groups`: one lr per MLLM part).
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    groups = trainable_param_groups(model, lr, weight_decay) if param_groups is None else param_groups
    factory = torch.optim.AdamW if optimizer is None else optimizer
    if not callable(factory):
        raise TypeError(
            f"train(optimizer=...): expected None, a torch optimizer class/factory or instance, got {optimizer!r}."
        )
    return factory(groups, lr=lr, weight_decay=weight_decay)


def lr_lambda(schedule: str | Callable[[int], float], steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step ``t`` (0-based).

    warm-up:  w(t) = (t+1) / warmup_steps            for t < warmup_steps
    cosine:   s(t) = ½ (1 + cos(π p)),  p = (t - warmup) / (steps - warmup)
    linear:   s(t) = 1 - p
    constant: s(t) = 1
    A callable ``t -> multiplier`` is used as is.
    """
    if callable(schedule):
        return schedule
    if schedule not in ("cosine", "linear", "constant"):
        raise ValueError(f"train(lr_schedule={schedule!r}): expected 'cosine', 'linear', 'constant' or a callable t -> multiplier.")

    def factor(t: int) -> float:
        if t < warmup_steps:
            return (t + 1) / warmup_steps
        p = (t - warmup_steps) / max(1, steps - warmup_steps)
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * p))
        if schedule == "linear":
            return 1.0 - p
        return 1.0

    return factor


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


class _IterableWrapper(torch.utils.data.IterableDataset):
    """Lets a DataLoader iterate anything with ``__iter__`` (e.g. a 🤗 ``datasets.IterableDataset``)."""

    def __init__(self, source):
        self.source = source

    def __iter__(self):
        return iter(self.source)


def _is_step_callable(dataset) -> bool:
    return callable(dataset) and not hasattr(dataset, "__getitem__") and not hasattr(dataset, "__iter__")


def _make_dataloader(dataset, batch_size: int, shuffle: bool, collate_fn, seed: int,
                     num_processes: int = 1) -> torch.utils.data.DataLoader:
    """The loader that Accelerate then shards: with N processes, process r takes batches r, N + r, ..."""
    if hasattr(dataset, "with_format") and getattr(dataset, "format", {}).get("type", None) is None:
        dataset = dataset.with_format("torch")  # 🤗 datasets: rows as tensors, so default_collate stacks them
    if not isinstance(dataset, torch.utils.data.Dataset) and not hasattr(dataset, "__getitem__"):
        if not hasattr(dataset, "__iter__"):
            raise TypeError(
                f"train(dataset=...): expected a datasets.Dataset, a torch Dataset or a callable step -> batch, "
                f"got {type(dataset).__name__}."
            )
        dataset = _IterableWrapper(dataset)
    iterable = isinstance(dataset, torch.utils.data.IterableDataset)
    sized = hasattr(dataset, "__len__") and not iterable
    generator = torch.Generator().manual_seed(seed)  # the shuffle order depends on `seed` only
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and not iterable,
        collate_fn=collate_fn,
        generator=generator,
        # every process sees a full batch at every step: drop an epoch's incomplete last batches
        # while there are enough rows for N full ones (else Accelerate's even_batches fills the
        # shards up by wrapping around to the epoch's first rows)
        drop_last=sized and len(dataset) >= batch_size * num_processes,
    )


def _cycle(dataloader) -> Iterator[Any]:
    """Yield batches forever, epoch after epoch."""
    epoch = 0
    while True:
        if hasattr(dataloader, "set_epoch"):
            dataloader.set_epoch(epoch)
        empty = True
        for batch in dataloader:
            empty = False
            yield batch
        if empty:
            raise ValueError("train(): the dataset yielded no batch; is it empty?")
        epoch += 1


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def _is_swift_model(model: nn.Module) -> bool:
    if isinstance(model, SwiftModel):
        return True
    return hasattr(model, "save_pretrained") and hasattr(model, "adapters")


def save_trainable(model: nn.Module, save_dir: str | os.PathLike) -> str:
    """Write only the parameters with requires_grad to ``save_dir/trainable.safetensors``.

    The write is staged (core's ``io.StagedWrite``): a crash never leaves a half-written
    checkpoint, and other files in ``save_dir`` are kept. Returns the file path.
    """
    tensors = {n: p for n, p in model.named_parameters() if p.requires_grad}
    with StagedWrite(save_dir) as stage:
        stage.safetensors(tensors, "trainable.safetensors", metadata={"format": "pt", "written_by": "swiftlite.train"})
    return os.path.join(save_dir, "trainable.safetensors")


def _save_checkpoint(model: nn.Module, save_dir: str | os.PathLike) -> None:
    if _is_swift_model(model):
        model.save_pretrained(save_dir)  # adapters + their configs, never the frozen backbone
    else:
        save_trainable(model, save_dir)


def _save_on_main(accelerator, model: nn.Module, save_dir: str | os.PathLike) -> None:
    """Process 0 writes the checkpoint; every process returns once it is on disk."""
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save_checkpoint(model, save_dir)
    accelerator.wait_for_everyone()


# ----------------------------------------------------------------------------------------------
# Loop
# ----------------------------------------------------------------------------------------------


def _default_loss(model: nn.Module, batch) -> torch.Tensor:
    if not isinstance(batch, dict):
        raise TypeError(
            f"train(loss_fn=None) calls model(**batch).loss, which needs dict batches; got {type(batch).__name__}. "
            "Pass loss_fn=lambda model, batch: ... for other batch types."
        )
    return model(**batch).loss


def _make_accelerator(grad_accum: int, mixed_precision: str):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import GradientAccumulationPlugin

    if mixed_precision == "auto":  # best available: bf16 on a GPU that has it, else fp32
        mixed_precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    # sync_with_dataloader=False: we cycle epochs ourselves, so an optimizer step is exactly every
    # `grad_accum` micro-batches and never forced at the end of an epoch.
    plugin = GradientAccumulationPlugin(num_steps=grad_accum, sync_with_dataloader=False)

    def make(cpu: bool = False):
        return Accelerator(gradient_accumulation_plugin=plugin, mixed_precision=mixed_precision, cpu=cpu)

    try:
        accelerator = make()
    except ValueError as err:
        # Accelerate keeps one process-wide state; a notebook that trained in "no" then asks for
        # "bf16" would be refused. In a single process that state holds nothing else, so reset it.
        state = AcceleratorState()
        if "already been initialized" not in str(err) or state.num_processes != 1:
            raise
        AcceleratorState._reset_state()
        accelerator = make()
    launched = _launched_world_size()
    if launched > 1 and accelerator.num_processes == 1:
        # torchrun (or `accelerate launch --multi_gpu`) started several processes, but Accelerate
        # found no GPU (or other device) for them and, not told to use the CPU, set each one up
        # alone: N independent runs that all save. No process group exists yet, so start again
        # asking for CPU processes, which Accelerate joins with gloo.
        AcceleratorState._reset_state(reset_partial_state=True)
        accelerator = make(cpu=True)
    _warn_if_alone(accelerator.num_processes, launched)
    return accelerator


def _launched_world_size() -> int:
    """How many processes the launcher says it started (torchrun's or MPI's variables; 1 if none)."""
    from accelerate.utils import get_int_from_env

    return get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)


_LAUNCH_HELP = ("Start N CPU processes with `torchrun --standalone --nproc_per_node N script.py` or "
               "`accelerate launch --multi_gpu --num_processes N script.py` (README: 'More than one process').")


def _warn_if_alone(num_processes: int, launched: int) -> None:
    """Warn when a launch meant for several processes ended with a world of one."""
    if num_processes > 1:
        return
    if launched > 1:
        why = f"the launcher started {launched} processes but Accelerate set this one up alone"
    elif os.environ.get("MASTER_ADDR") and "WORLD_SIZE" not in os.environ:
        # `accelerate launch --num_processes N` sets MASTER_ADDR for N processes, then starts one
        # plain process when it takes its simple path (`--cpu`, or no GPU found; N CPU processes
        # there need MPI and a hostfile)
        why = ("the launcher prepared a multi-process run (MASTER_ADDR is set) but started only this process, "
               "as `accelerate launch --cpu --num_processes N` (or `--num_processes N` without GPUs) does")
    else:
        return
    warnings.warn(f"train(): world size 1: {why}. Training goes on in this one process. {_LAUNCH_HELP}",
                  RuntimeWarning, stacklevel=4)  # points at the call of train()


class _LossModule(nn.Module):
    """``forward(batch) = loss_fn(model, batch)``: the module that DDP wraps with several processes.

    DDP reduces gradients only for a forward pass that goes through its own ``forward``, while
    ``loss_fn`` wants the model itself (``model.config``, ``model.active_adapters``, its
    submodules). Wrapping the whole loss computation gives both.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model = model
        object.__setattr__(self, "loss_fn", loss_fn)  # not a submodule: its parameters are not trained

    def forward(self, batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


@contextlib.contextmanager
def _inactive_adapters_frozen(model: nn.Module) -> Iterator[None]:
    """Inside the block, the trainable parameters of a SwiftModel's inactive adapters are frozen.

    An inactive adapter takes no part in the forward pass, so its parameters get no gradient. One
    process skips them (the optimizer ignores a parameter whose grad is None), but DDP waits for a
    gradient of every trainable parameter and fails. ``requires_grad`` is restored on exit.
    """
    frozen: list[nn.Parameter] = []
    if _is_swift_model(model) and hasattr(model, "active_adapters") and hasattr(model, "adapter_parameters"):
        active = set(model.active_adapters)
        in_use = {id(p) for name in active for p in model.adapter_parameters(name).values()}
        for name in model.adapters:
            if name in active:
                continue
            for p in model.adapter_parameters(name).values():
                if p.requires_grad and id(p) not in in_use:
                    p.requires_grad_(False)
                    frozen.append(p)
    try:
        yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _run_eval(eval_fn, model: nn.Module) -> dict[str, float]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            metrics = eval_fn(model)
    finally:
        model.train(was_training)
    if not isinstance(metrics, dict):
        raise TypeError(f"train(eval_fn=...): eval_fn must return a dict of floats, got {type(metrics).__name__}.")
    return {k: float(v) for k, v in metrics.items()}


def train(
    model: nn.Module,
    dataset,
    loss_fn: LossFn | None,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    grad_accum: int = 1,
    mixed_precision: str = "no",
    collate_fn: Callable | None = None,
    eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
    eval_every: int | None = None,
    save_dir: str | os.PathLike | None = None,
    save_every: int | None = None,
    seed: int = 0,
    progress: bool = True,
    lr_schedule: str | Callable[[int], float] = "cosine",
    warmup_steps: int = 0,
    ema: float | None = None,
    optimizer=None,
    shuffle: bool = True,
    max_grad_norm: float | None = 1.0,
    on_step_begin: Callable[[int, nn.Module, torch.optim.Optimizer], None] | None = None,
    param_groups: list[dict] | None = None,
) -> History:
    """Train ``model`` in place for ``steps`` optimizer steps and return its :class:`History`.

    Args:
        model: any ``nn.Module``; only parameters with ``requires_grad`` are optimized.
        dataset: a 🤗 ``datasets.Dataset`` (formatted as torch if it has no format), any torch
            ``Dataset``/``IterableDataset``, or a callable ``i -> batch`` called with the
            micro-batch index ``i = 0, 1, 2, ...`` (``steps * grad_accum`` calls in all); with
            N processes, process r calls it with ``i·N + r`` (each process its own batches).
            Map-style data is shuffled by a generator seeded with ``seed`` and cycled epoch after
            epoch; the last incomplete batch of an epoch is dropped (with N processes: while the
            data holds N full batches; below that Accelerate fills the shards by wrapping around).
        loss_fn: ``loss_fn(model, batch) -> scalar``; None means ``model(**batch).loss``.
        steps: optimizer steps (each one is ``grad_accum`` micro-batches of ``batch_size`` rows
            in each process).
        mixed_precision: "no", "fp16", "bf16" (Accelerate autocast) or "auto" (bf16 if the GPU
            supports it, else "no").
        eval_fn: ``eval_fn(model) -> {name: float}``, called under ``torch.no_grad`` in eval
            mode after every ``eval_every`` steps and once at the end (after EMA weights are
            copied in, so the last entry describes the returned model).
        save_dir / save_every: tuner-only checkpoints every ``save_every`` steps and at the end.
        lr_schedule: "cosine" (to 0), "linear" (to 0), "constant", or a callable ``t -> factor``;
            ``warmup_steps`` of linear warm-up come first.
        ema: None or a decay β; an EMA of the trainable parameters is copied into the model at
            the end (``History.ema_decay`` records it).
        optimizer: None (AdamW), an optimizer class/factory called as
            ``optimizer(param_groups, lr=..., weight_decay=...)``, or an optimizer instance.
        max_grad_norm: clip the global grad norm to this value; None disables clipping.
        on_step_begin: None or ``f(step, model, optimizer)``, called before the first micro-batch of
            every optimizer step (``step`` 0-based; the unwrapped model); e.g. LISA's layer switch.
        param_groups: None (every trainable parameter; a SwiftModel's own groups) or explicit
            optimizer groups, each with its own ``lr``, e.g. the per-part groups of
            :func:`swiftlite.llm.multimodal.multimodal_param_groups` (``vit_lr``, ``aligner_lr``);
            the schedule scales every group's lr by the same factor.
    """
    if steps < 1 or grad_accum < 1 or batch_size < 1:
        raise ValueError(f"train(): steps, grad_accum and batch_size must be >= 1, got {steps}, {grad_accum}, {batch_size}.")
    for name, every in (("eval_every", eval_every), ("save_every", save_every)):
        if every is not None and every < 1:
            raise ValueError(f"train({name}={every}): expected None or a positive number of steps.")
    if ema is not None and not 0.0 <= ema < 1.0:
        raise ValueError(f"train(ema={ema}): expected None or a decay in [0, 1), e.g. 0.999.")
    from accelerate.utils import send_to_device, set_seed
    from tqdm.auto import tqdm

    set_seed(seed)  # python, numpy and torch RNGs
    loss_fn = loss_fn or _default_loss
    accelerator = _make_accelerator(grad_accum, mixed_precision)
    n_proc, rank = accelerator.num_processes, accelerator.process_index

    with _inactive_adapters_frozen(model):
        opt = make_optimizer(model, lr, weight_decay, optimizer, param_groups)
        params = [p for g in opt.param_groups for p in g["params"]]
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(lr_schedule, steps, warmup_steps))
        # With several processes DDP wraps the whole loss computation, so loss_fn still gets `model`.
        wrapped = _LossModule(model, loss_fn) if n_proc > 1 else model
        if _is_step_callable(dataset):
            wrapped, opt = accelerator.prepare(wrapped, opt)
            # process r of N takes micro-batches r, N + r, 2N + r, ...: its own data, as a loader's shard
            batches = (send_to_device(dataset(i * n_proc + rank), accelerator.device) for i in range(steps * grad_accum))
        else:
            loader = _make_dataloader(dataset, batch_size, shuffle, collate_fn, seed, n_proc)
            wrapped, opt, loader = accelerator.prepare(wrapped, opt, loader)
            batches = _cycle(loader)
        trainable = [p.requires_grad for p in model.parameters()]  # the set DDP was built for
        ema_params = [p.detach().clone().float() for p in params] if ema is not None else None

        history = History()
        bar = tqdm(total=steps, desc="train", disable=not progress or not accelerator.is_local_main_process)
        wrapped.train()
        start = time.perf_counter()
        step, loss_sum, micro = 0, torch.zeros((), device=accelerator.device), 0
        while step < steps:
            if on_step_begin is not None and micro == 0:
                on_step_begin(step, model, opt)
                if n_proc > 1 and [p.requires_grad for p in model.parameters()] != trainable:
                    raise RuntimeError(
                        "train(on_step_begin=...): the hook changed which parameters require grad, which DDP "
                        f"cannot follow with {n_proc} processes (it fixes that set when it wraps the model). "
                        "Run such a schedule (e.g. LISA) in one process."
                    )
            batch = next(batches)
            with accelerator.accumulate(wrapped):
                with accelerator.autocast():
                    loss = wrapped(batch) if n_proc > 1 else loss_fn(wrapped, batch)
                if loss.dim() != 0:
                    raise ValueError(f"train(): loss_fn must return a scalar tensor, got shape {tuple(loss.shape)}.")
                accelerator.backward(loss)  # divides by grad_accum
                loss_sum += loss.detach().float()
                micro += 1
                if accelerator.sync_gradients and max_grad_norm is not None:
                    norm = accelerator.clip_grad_norm_(params, max_grad_norm)
                    history.grad_norm.append(float(norm))
                opt.step()  # Accelerate skips it on accumulation micro-steps
                opt.zero_grad(set_to_none=True)
            if not accelerator.sync_gradients:
                continue

            # ---- one optimizer step done ----
            history.lr.append(scheduler.get_last_lr()[0])
            if not getattr(opt, "step_was_skipped", False):  # fp16 overflow steps do not advance the schedule
                scheduler.step()
            if ema_params is not None:
                with torch.no_grad():
                    for e, p in zip(ema_params, params):
                        # θ_ema = β θ_ema + (1-β) θ
                        e.lerp_(p.detach().float(), 1.0 - ema)
            step_loss = accelerator.reduce(loss_sum / micro, reduction="mean").item()
            history.loss.append(step_loss)
            loss_sum.zero_()
            micro = 0
            step += 1
            postfix = {"loss": f"{step_loss:.4g}"}
            if eval_fn is not None and eval_every is not None and step % eval_every == 0 and step < steps:
                metrics = _run_eval(eval_fn, model)
                history.evals.append((step, metrics))
                postfix.update({k: f"{v:.4g}" for k, v in metrics.items()})
            if save_dir is not None and save_every is not None and step % save_every == 0 and step < steps:
                _save_on_main(accelerator, model, save_dir)
            bar.set_postfix(postfix)
            bar.update(1)

        if ema_params is not None:
            with torch.no_grad():
                for e, p in zip(ema_params, params):
                    p.copy_(e.to(p.dtype))
            history.ema_decay = ema
        if eval_fn is not None:
            metrics = _run_eval(eval_fn, model)
            history.evals.append((step, metrics))
            bar.set_postfix({"loss": f"{history.loss[-1]:.4g}", **{k: f"{v:.4g}" for k, v in metrics.items()}})
        if save_dir is not None:
            _save_on_main(accelerator, model, save_dir)
        bar.close()
        accelerator.unwrap_model(wrapped, keep_fp32_wrapper=False)  # removes the autocast wrapper from forward
    history.seconds = time.perf_counter() - start
    history.steps = step
    return history
