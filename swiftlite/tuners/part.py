"""Part: train a copy of a few chosen modules, the rest of the model frozen (ms-swift's `Part` tuner).

Partial fine-tuning is the oldest baseline of transfer learning: keep the backbone frozen and
retrain some of its layers (the last blocks, the head, the norms; see e.g. "How transferable are
features in deep neural networks?", Yosinski et al., 2014, arXiv:1411.1792). As an adapter it is::

    f_part(x) = f_θ'(x)   if the adapter is active,    θ' initialised as a copy of θ
    f_part(x) = f_θ(x)    otherwise (the frozen original)

Each adapter owns its own copy θ', so several can coexist and be switched, and deleting the
adapter restores the base exactly. A copy costs as many parameters as the module it replaces.

Merging: writing θ' into the original module is exact (the copy *is* the module), so swiftlite
supports it even though ms-swift does not; the original θ is kept aside until `unmerge()` (one
extra copy of the module's weights while merged) and dropped by `merge_and_unload()`.

Differences from ms-swift: targets may also be a list of names; when several Part adapters are
active on one module the most recently added one runs (ms-swift asserts only one is active).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.layer import check_finite
from ..core.targeting import match_modules


@dataclass
class PartConfig(SwiftConfig):
    """Field names follow ms-swift's `PartConfig`."""

    swift_type: str = field(default="PART")
    target_modules: Any = None  # regex (full match) or list of names: the modules to train a copy of

    _invalid_examples: ClassVar[dict] = {"target_modules": None}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the modules to train, e.g. r'.*layers\\.1' or ['head']")


class PartLayer(TunerLayer):
    """Runs a trainable copy of the wrapped module when its adapter is active."""

    adapter_attrs = ("part",)
    mergeable = True

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.part = nn.ModuleDict()
        self._original: dict[str, torch.Tensor] | None = None  # θ, kept aside while any copy is merged


    def add_adapter(self, adapter_name: str, config: PartConfig) -> None:
        self.part[adapter_name] = copy.deepcopy(self.base_layer)  # θ' = θ

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        active = self.active_adapters
        if not active:
            return self.base_layer(*args, **kwargs)  # f_θ(x)
        return self.part[active[-1]](*args, **kwargs)  # f_θ'(x)

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        trained = self.part[adapter_name].state_dict()
        if safe_merge:
            for key, value in trained.items():
                if value.is_floating_point():
                    check_finite(value, f"Part adapter {adapter_name!r} ({key})")
        if self._original is None:  # the first merge keeps θ aside
            self._original = {k: v.detach().clone() for k, v in self.base_layer.state_dict().items()}
        self.base_layer.load_state_dict(trained)  # θ ← θ'

    def unmerge(self, adapter_name: str) -> None:
        # A copy *replaces* θ, so merges do not stack: restore the latest other merged copy, else θ.
        others = [n for n in self.merged_adapters if n != adapter_name]
        if others:
            self.base_layer.load_state_dict(self.part[others[-1]].state_dict())
        else:
            self.base_layer.load_state_dict(self._original)
            self._original = None


@register_tuner
class PartTuner(Tuner):
    config_class = PartConfig
    layer_class = PartLayer
    mergeable = True

    @classmethod
    def match(cls, model: nn.Module, config: PartConfig) -> list[str]:
        found = match_modules(model, config.target_modules, config_name=type(config).__name__)
        # A module inside another matched module is already part of that module's copy.
        return [n for n in found if not any(n.startswith(other + ".") for other in found)]
