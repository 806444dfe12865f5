"""All or nothing: put a model back exactly as it was when a change fails half-way.

`prepare_model`, `add_adapter(s)`, `from_pretrained` and `add_weighted_adapter` change a model in
many places (new modules, `requires_grad` flags, per-adapter bookkeeping, the HF config). Each one
takes a `Snapshot` before it starts and restores it if anything raises, so the module tree,
parameters, flags, adapters and the HF config are as they were:

    with all_or_nothing(model):
        tuner.inject(model, config, "default")      # raises half-way: model unchanged

A snapshot copies each module's `__dict__` (the dicts of children, parameters, buffers, hooks, and
plain lists / sets / dicts inside), never a tensor, so it is cheap.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch.nn as nn


class Snapshot:
    """What a failed prepare/load must put back: every module's attributes (children, parameters,
    hooks, per-adapter bookkeeping), `requires_grad` flags, the HF config, the SwiftModel's own state."""

    def __init__(self, root: nn.Module, owner: nn.Module | None = None) -> None:
        self.modules = [(m, copy_plain(m.__dict__)) for m in root.modules()]
        self.grads = [(p, p.requires_grad) for p in root.parameters()]
        config = getattr(root, "config", None)
        self.config = (config, copy_plain(vars(config))) if hasattr(config, "__dict__") and not isinstance(config, nn.Module) else None
        self.owner = (owner, copy_plain(owner.__dict__)) if owner is not None else None

    def restore(self) -> None:
        for obj, saved in [*self.modules, *([self.config] if self.config else []), *([self.owner] if self.owner else [])]:
            obj.__dict__.clear()
            obj.__dict__.update(saved)
        for p, flag in self.grads:
            p.requires_grad_(flag)


@contextlib.contextmanager
def all_or_nothing(root: nn.Module, owner: nn.Module | None = None) -> Iterator[None]:
    """Run the block; if it raises, restore `root` (and `owner`, the SwiftModel around it) and re-raise."""
    snapshot = Snapshot(root, owner=owner)
    try:
        yield
    except BaseException:
        snapshot.restore()
        raise


def copy_plain(value: Any) -> Any:
    """Copy dicts, lists and sets (recursively); share everything else (modules, tensors)."""
    if isinstance(value, dict):
        copied = value.copy()  # keeps the type (OrderedDict, defaultdict, ...)
        for k in copied:
            copied[k] = copy_plain(copied[k])
        return copied
    if type(value) in (list, set):
        return type(value)(copy_plain(v) for v in value)
    return value
