"""Mixed-adapter batches: one forward in which each sample uses its own LoRA adapter.

    out = model(input_ids, adapter_names=["math", "__base__", "code", "math"])   # one name per sample
    ids = model.generate(input_ids, adapter_names=[...], max_new_tokens=8)

Sample i is computed as if adapter a_i alone were active ("__base__": no adapter at all). In every
LoRA layer, with I_a = {i : a_i = a} the rows that asked for adapter a::

    h_i = W0 x_i + s_a · B_a A_a x_i        for i ∈ I_a      (h_i = W0 x_i when a_i = "__base__")

so one batched W0 x serves every sample and each adapter's low-rank update runs on its own rows
(PEFT's `_mixed_batch_forward` does the same: gather the rows, add the update with its scaling). The
Triton path (`bgmv.py`, opt-in with `swiftlite.kernels.use_triton`) does the update for every row in
one launch, each row gathering its own A and B. The active / inactive state of adapters is ignored
inside such a forward: the names decide.

Rules (as PEFT's, each refused with one clear error): inference only (the model in eval mode); every
name is "__base__" or a LoRA adapter the model holds; no DoRA adapter; no adapter merged into the
weights; one name per sample. swiftlite also refuses a non-LoRA adapter that is active, since it
would run on every row. `generate` expands inputs for beams / several sequences per prompt by repeating
each sample in place (transformers' `repeat_interleave`), so there a batch of k·n rows for n names
gives each name its k consecutive rows.

How it is wired: `SwiftModel.forward` / `generate` take `adapter_names` out of the keyword arguments
(the HF model never sees it) and run the call inside `adapter_batch(...)`, which puts the names in a
context variable (so each thread has its own); `LoRALayer.forward` asks `current_adapter_batch()`.
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.nn as nn

from .dispatch import triton_enabled

BASE = "__base__"  # PEFT's name for "no adapter on this sample"


@dataclass(frozen=True)
class AdapterBatch:
    """The adapter of each sample of the batch now running."""

    names: tuple[str, ...]
    generating: bool = False  # inside generate: a batch may be expanded k times (beams, num_return_sequences)

    def rows(self, n: int) -> tuple[str, ...]:
        """The adapter of each of the n rows of a layer's input."""
        if n == len(self.names):
            return self.names
        if self.generating and n % len(self.names) == 0:  # generate repeated each sample k times in place
            k = n // len(self.names)
            return tuple(name for name in self.names for _ in range(k))
        raise ValueError(f"adapter_names: {len(self.names)} names for a batch of {n} samples; give one name per "
                         f"sample (\"{BASE}\" for no adapter)")


_current: contextvars.ContextVar[AdapterBatch | None] = contextvars.ContextVar("swiftlite_adapter_batch", default=None)


def current_adapter_batch() -> AdapterBatch | None:
    """The mixed batch running now in this thread (None: an ordinary forward)."""
    return _current.get()


def check_adapter_names(model: nn.Module, adapter_names: Any) -> tuple[str, ...]:
    """`adapter_names` as a tuple, after every check that needs no forward (see the module docstring).
    `model` is a SwiftModel (its `adapters`, `training` and `base_model` are read)."""
    if isinstance(adapter_names, str) or not isinstance(adapter_names, Sequence) or not adapter_names:
        raise TypeError(f"adapter_names: expected a non-empty list with one adapter name per sample "
                        f"(\"{BASE}\" for no adapter), got {adapter_names!r}")
    names = tuple(adapter_names)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"adapter_names: every entry must be a str, got {bad[0]!r}")
    if model.training:
        raise ValueError("adapter_names: mixed-adapter batches are for inference; call model.eval() first")
    unknown = sorted({n for n in names if n != BASE and n not in model.adapters})
    if unknown:
        raise ValueError(f"adapter_names: unknown adapter(s) {unknown}; the model holds {sorted(model.adapters)} "
                         f"(\"{BASE}\" means no adapter)")
    for name in dict.fromkeys(n for n in names if n != BASE):
        config = model.adapters[name]
        if str(getattr(config, "swift_type", "")).upper() != "LORA":
            raise ValueError(f"adapter_names: {name!r} is a {type(config).__name__} adapter; mixed-adapter batches "
                             f"support LoRA adapters only")
        if getattr(config, "use_dora", False):
            raise ValueError(f"adapter_names: {name!r} uses DoRA, which mixed-adapter batches do not support")
    others = [n for n in model.active_adapters if str(getattr(model.adapters[n], "swift_type", "")).upper() != "LORA"]
    if others:
        raise ValueError(f"adapter_names: non-LoRA adapter(s) {others} are active and would run on every sample; "
                         f"deactivate_adapter them for a mixed-adapter batch")
    merged = sorted({n for m in model.base_model.modules() for n in (getattr(m, "merged_adapters", None) or [])})
    if merged:
        raise ValueError(f"adapter_names: adapters {merged} are merged into the weights; call unmerge() first")
    return names


@contextlib.contextmanager
def adapter_batch(model: nn.Module, adapter_names: Sequence[str], generating: bool = False) -> Iterator[None]:
    """Inside the block, LoRA layers of `model` give sample i the adapter `adapter_names[i]`."""
    token = _current.set(AdapterBatch(check_adapter_names(model, adapter_names), generating))
    try:
        yield
    finally:
        _current.reset(token)


def lora_mixed_forward(layer: nn.Module, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """A LoRA layer's forward in a mixed batch (the PyTorch reference; the Triton path is `bgmv.py`)."""
    names = _current.get().rows(x.shape[0])
    h = layer.base_layer(x, *args, **kwargs)  # W0 x + b for every row at once
    held = [n for n in dict.fromkeys(names) if n in layer.scaling]  # this layer's adapters among the names
    if not held:
        return h
    if triton_enabled():  # opt-in: every row's update in one launch (imported only then: it imports Triton)
        from .bgmv import bgmv_lora_delta, bgmv_supports

        if bgmv_supports(layer):
            return h + bgmv_lora_delta(layer, x, names).to(h.dtype)
    for name in held:
        rows = torch.tensor([i for i, n in enumerate(names) if n == name], device=x.device)  # I_a
        x_a = layer.lora_dropout[name](x.index_select(0, rows))
        # h_i += s_a · B_a A_a x_i    for i ∈ I_a
        delta = layer.apply_B(name, layer.apply_A(name, x_a)) * layer.scaling[name]
        h = h.index_add(0, rows, delta.to(h.dtype))
    return h
