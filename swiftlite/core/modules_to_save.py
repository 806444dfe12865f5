"""`modules_to_save`: train a full copy of a few base modules (e.g. a new classifier head).

Each adapter gets its own trainable copy; when the adapter is active its copy runs instead of the
frozen original. Any config with a `modules_to_save` field gets this for free (as in PEFT).
"""
from __future__ import annotations

import copy
from typing import Any

import torch.nn as nn

from .layer import TunerLayer


class ModulesToSaveLayer(TunerLayer):
    adapter_attrs = ("modules_to_save",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.modules_to_save = nn.ModuleDict()

    def add_adapter(self, adapter_name: str, config: Any) -> None:
        self.modules_to_save[adapter_name] = copy.deepcopy(self.base_layer)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        active = self.active_adapters
        if not active:
            return self.base_layer(*args, **kwargs)
        # One copy replaces the module, so the most recently added active adapter wins.
        return self.modules_to_save[active[-1]](*args, **kwargs)
