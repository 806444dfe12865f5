"""`modules_to_save`: train a full copy of a few base modules (e.g. a new classifier head).

Each adapter gets its own trainable copy; when the adapter is active its copy runs instead of the
frozen original. Any config with a `modules_to_save` field gets this for free (as in PEFT).

Merging copies the adapter's weights into the original module (exact); the original weights are
kept aside so `unmerge` restores them. Copies replace rather than add, so merges do not stack:
the most recently merged copy is what the module holds.
"""
from __future__ import annotations

import copy
from typing import Any

import torch.nn as nn

from .layer import TunerLayer


class ModulesToSaveLayer(TunerLayer):
    adapter_attrs = ("modules_to_save",)
    mergeable = True

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.modules_to_save = nn.ModuleDict()
        self._original: dict[str, Any] | None = None  # base weights before the first merge

    def add_adapter(self, adapter_name: str, config: Any) -> None:
        self.modules_to_save[adapter_name] = copy.deepcopy(self.base_layer)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        active = self.active_adapters
        if not active:
            return self.base_layer(*args, **kwargs)
        # One copy replaces the module, so the most recently added active adapter wins.
        return self.modules_to_save[active[-1]](*args, **kwargs)

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        if self._original is None:
            self._original = {k: v.clone() for k, v in self.base_layer.state_dict().items()}
        self.base_layer.load_state_dict(self.modules_to_save[adapter_name].state_dict())

    def unmerge(self, adapter_name: str) -> None:
        others = [n for n in self.merged_adapters if n != adapter_name]
        if others:
            self.base_layer.load_state_dict(self.modules_to_save[others[-1]].state_dict())
        else:
            self.base_layer.load_state_dict(self._original)
            self._original = None
