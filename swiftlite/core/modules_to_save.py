"""Trainable copies of whole modules: `modules_to_save` (PEFT / ms-swift LoRA) and the Part tuner.

One mechanism, two names. A wrapped module f_θ keeps its frozen θ; each adapter owns a copy θ'::

    f(x) = f_θ'(x)    if the adapter is active     (θ' initialised as a copy of θ)
    f(x) = f_θ(x)     otherwise

A copy *replaces* the module, so when several adapters are active the most recently added one runs.
Merging writes θ' into the module (exact): θ ← θ'. Copies replace rather than add, so merges do not
stack: the latest merged copy is what the module holds. Unmerging uses TunerLayer's generic undo
(`keep_pre_merge`: the module's tensors from before each merge are kept and put back exactly).

Checkpoint names: a copy's parameters are saved under the module's own names (`classifier.weight`,
not `classifier.modules_to_save.default.weight`), as PEFT and ms-swift save them; the adapter is
told by the folder it is saved in.

Where the copies live (the two names differ only here):
- `ModulesToSaveLayer` (PEFT's `ModulesToSaveWrapper` shape): `layer.modules_to_save[adapter]`
  (a ModuleDict), `layer.original_module` (the frozen module), `layer.active_adapter`;
- `PartLayer` (ms-swift's Part, in `tuners/part.py`): a submodule `_part_<adapter>` whose
  `activated` attribute mirrors the adapter's activation.
"""
from __future__ import annotations

import copy
from typing import Any, Iterator

import torch.nn as nn

from .config import SwiftConfig
from .layer import TunerLayer, check_finite
from .targeting import replace_module


class ModuleCopyLayer(TunerLayer):
    """Runs an adapter's trainable copy θ' of the wrapped module instead of the frozen θ.

    Subclasses say where copies are stored: `copy_of(name)`, `_store_copy`, `_drop_copy`."""

    mergeable = True
    keep_pre_merge = True  # unmerge puts back the module's tensors from before the merge (core/layer.py)

    # ---- storage (overridden by the thin subclasses) ------------------------------------------
    def copy_of(self, adapter_name: str) -> nn.Module:
        raise NotImplementedError

    def _store_copy(self, adapter_name: str, module: nn.Module) -> None:
        raise NotImplementedError

    # ---- adapters -----------------------------------------------------------------------------
    def add_adapter(self, adapter_name: str, config: SwiftConfig) -> None:
        self._store_copy(adapter_name, copy.deepcopy(self.base_layer))  # θ' = θ

    def adapter_parameters(self, adapter_name: str) -> Iterator[tuple[str, nn.Parameter]]:
        """The copy's parameters under the module's own names ('weight', 'bias', ...)."""
        if adapter_name in self.adapter_names:
            yield from self.copy_of(adapter_name).named_parameters()

    @property
    def running_adapter(self) -> str | None:
        """The adapter whose copy runs in this thread's forward (None: the frozen module runs)."""
        active = self.active_adapters
        return active[-1] if active else None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        name = self.running_adapter
        if name is None:
            return self.base_layer(*args, **kwargs)  # f_θ(x)
        return self.copy_of(name)(*args, **kwargs)  # f_θ'(x)

    # ---- merging ------------------------------------------------------------------------------
    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        trained = self.copy_of(adapter_name).state_dict()
        if safe_merge:
            for key, value in trained.items():
                if value.is_floating_point():
                    check_finite(value, f"the copy of adapter {adapter_name!r} ({key})")
        self.base_layer.load_state_dict(trained)  # θ ← θ'


class ModulesToSaveLayer(ModuleCopyLayer):
    """`modules_to_save`: copies in `self.modules_to_save[adapter]`, as PEFT's ModulesToSaveWrapper."""

    adapter_attrs = ("modules_to_save",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.modules_to_save = nn.ModuleDict()

    @property
    def original_module(self) -> nn.Module:
        """The frozen module (PEFT's name for `base_layer`)."""
        return self.base_layer

    @property
    def active_adapter(self) -> str | None:
        """The adapter whose copy runs (PEFT's name); None when no adapter is active."""
        return self.running_adapter

    def copy_of(self, adapter_name: str) -> nn.Module:
        return self.modules_to_save[adapter_name]

    def _store_copy(self, adapter_name: str, module: nn.Module) -> None:
        self.modules_to_save[adapter_name] = module


def _suffix_matches(name: str, targets: list[str]) -> bool:
    """PEFT's rule for modules_to_save: a plain suffix (`head` matches `head` and `lm_head`)."""
    return any(name.endswith(t) for t in targets)


def wrap_modules_to_save(model: nn.Module, config: SwiftConfig, adapter_name: str) -> list[str]:
    """Give `adapter_name` a trainable copy of every module named in `config.modules_to_save`.

    Names match like PEFT's: a module whose name ends with an entry. The inside of a matched module,
    and of any tuner layer, is not matched again; a module already wrapped by another tuner is left
    alone. Returns the wrapped names."""
    targets = getattr(config, "modules_to_save", None)
    if not targets:
        return []
    targets = [targets] if isinstance(targets, str) else list(targets)
    wrapped: list[str] = []
    inside: list[str] = []  # tuner layers and wrapped modules: their insides are never matched
    for name, module in list(model.named_modules()):
        if not name or any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(module, TunerLayer):
            inside.append(name)
        if not _suffix_matches(name, targets):
            continue
        if isinstance(module, ModulesToSaveLayer):  # a copy for one more adapter
            module.add_adapter(adapter_name, config)
        elif not isinstance(module, TunerLayer):
            layer = ModulesToSaveLayer(module)
            layer.add_adapter(adapter_name, config)
            replace_module(model, name, layer)
            inside.append(name)
        else:
            continue
        wrapped.append(name)
    return wrapped
