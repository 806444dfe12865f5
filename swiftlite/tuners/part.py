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

Structure and checkpoints as in ms-swift: the copy is a submodule `_part_<adapter>` of the target
(`model.get_submodule("head._part_default")`) with a bool `activated`; it is saved under the
module's own names (`head.weight`, not `head._part_default.weight`). The copy mechanism is shared
with `modules_to_save` (`core/modules_to_save.py`); this file only says where the copy is stored.

Differences from ms-swift: the target is wrapped by a `PartLayer` (ms-swift patches its `forward`);
targets may also be a list of names; when several Part adapters are
active on one module the most recently added one runs (ms-swift asserts only one is active).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Target
from ..core.modules_to_save import ModuleCopyLayer
from ..core.targeting import match_modules, replace_module


@dataclass
class PartConfig(SwiftConfig):
    """Field names follow ms-swift's `PartConfig`."""

    swift_type: str = field(default="part")  # ms-swift's spelling (SwiftTuners.PART = 'part'); read in any case
    target_modules: Target = None  # regex (full match) or list of names: the modules to train a copy of

    _invalid_examples: ClassVar[dict] = {"target_modules": None}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the modules to train, e.g. r'.*layers\\.1' or ['head']")


class PartLayer(ModuleCopyLayer):
    """Part's storage of the copy θ': a submodule `_part_<adapter>` with a bool `activated`, as in ms-swift.

    `activated` mirrors the latest activation call (for code written against ms-swift); the forward
    reads the thread-aware activation state of `TunerLayer`."""

    PREFIX = "_part_"
    adapter_prefixes = (PREFIX,)  # one child `_part_<adapter>` per adapter (core/layer.py)

    def copy_of(self, adapter_name: str) -> nn.Module:
        return self._modules[self.PREFIX + adapter_name]

    def _store_copy(self, adapter_name: str, module: nn.Module) -> None:
        module.activated = False
        module.part_name = adapter_name
        self.add_adapter_module(self.PREFIX, adapter_name, module)

    def set_adapter_active(self, adapter_name: str, active: bool) -> None:
        super().set_adapter_active(adapter_name, active)
        self.copy_of(adapter_name).activated = active


@register_tuner
class PartTuner(Tuner):
    """Wraps each matched module, outermost only; its copy `_part_<adapter>` runs when active.
    Merging writes the copy's weights into the module (exact)."""

    config_class = PartConfig
    layer_class = PartLayer
    mergeable = True

    @classmethod
    def match(cls, model: nn.Module, config: PartConfig) -> list[str]:
        found = match_modules(model, config.target_modules, config_name=type(config).__name__)
        # A module inside another matched module is already part of that module's copy.
        return [n for n in found if not any(n.startswith(other + ".") for other in found)]

    @classmethod
    def check(cls, model: nn.Module, config: PartConfig, names: list[str]) -> None:
        top = [n for n, child in model.named_children() if any(True for _ in child.parameters())]
        if isinstance(config.target_modules, str) and top and set(top) <= set(names):
            raise ValueError(f"PartConfig.target_modules={config.target_modules!r} selects every top-level module "
                             f"({', '.join(top)}), i.e. a copy of the whole model: that is full fine-tuning, not Part "
                             f"tuning; narrow the regex to the blocks to train, e.g. r'model\\.layers\\.1'")

    @classmethod
    def inject(cls, model: nn.Module, config: PartConfig, adapter_name: str) -> None:
        """As ms-swift: under another tuner's wrapper (e.g. LoRA) the copy is made of its `base_layer`,
        so the other tuner keeps working on top of whichever copy runs."""
        for name in cls.match(model, config):
            module = model.get_submodule(name)
            while isinstance(module, TunerLayer) and not isinstance(module, PartLayer) and module.base_layer is not None:
                name, module = f"{name}.base_layer", module.base_layer
            if isinstance(module, PartLayer):
                module.add_adapter(adapter_name, config)
            else:
                layer = PartLayer(module)
                layer.add_adapter(adapter_name, config)
                replace_module(model, name, layer)
