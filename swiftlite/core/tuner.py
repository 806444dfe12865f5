"""Tuner: the "how" of a tuning method — which modules it attaches to and what it puts there.

A tuner file defines a config dataclass, one or more `TunerLayer` modules, and a `Tuner` subclass
tying them together, then calls `register_tuner`. For the common case — wrap every matched module
in a layer class — setting `config_class`, `layer_class` and `target_types` is enough: the default
`match` and `inject` below do the rest. Tuners that attach differently (insert new blocks, hook
embeddings) override `inject`.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch.nn as nn

from .config import SwiftConfig
from .layer import TunerLayer
from .targeting import match_modules, replace_module


class Tuner:
    config_class: ClassVar[type[SwiftConfig]]
    layer_class: ClassVar[type[TunerLayer] | None] = None
    # Module types the default `match` accepts (None: any module).
    target_types: ClassVar[tuple[type, ...] | None] = None
    # Promise checked by the conformance kit: output == base output right after injection.
    identity_at_init: ClassVar[bool] = True
    # Can its weights be folded into the base (merge / merge_and_unload)? If not, say why.
    mergeable: ClassVar[bool] = False
    not_mergeable_reason: ClassVar[str] = ""
    # PEFT's name for the same method, if its checkpoints convert by renaming; such a tuner also
    # sets `peft_spec` (a `core.peft_format.PeftSpec`), and `to_peft` / `from_peft` below do the rest.
    peft_type: ClassVar[str | None] = None
    peft_spec: ClassVar[Any] = None

    @classmethod
    def supported_types(cls) -> tuple[type, ...] | None:
        """Override when the accepted types need a lazy import (e.g. transformers' Conv1D)."""
        return cls.target_types

    @classmethod
    def match(cls, model: nn.Module, config: SwiftConfig) -> list[str]:
        return match_modules(
            model, config.target_modules, types=cls.supported_types(), config_name=type(config).__name__
        )

    @classmethod
    def inject(cls, model: nn.Module, config: SwiftConfig, adapter_name: str) -> None:
        """Wrap each matched module in `layer_class`, or add the adapter to an existing one."""
        for name in cls.match(model, config):
            module = model.get_submodule(name)
            if isinstance(module, cls.layer_class):
                module.add_adapter(adapter_name, config)
            else:
                layer = cls.layer_class(module)
                layer.add_adapter(adapter_name, config)
                replace_module(model, name, layer)

    @classmethod
    def to_peft(cls, config: SwiftConfig, weights: dict[str, Any], adapter_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(PEFT adapter_config.json dict, PEFT-named weights) of one adapter (see core/peft_format.py)."""
        from .peft_format import to_peft

        return to_peft(cls, config, weights, adapter_name)

    @classmethod
    def from_peft(cls, peft_config: dict[str, Any], weights: dict[str, Any], adapter_name: str
                  ) -> tuple[SwiftConfig, dict[str, Any]]:
        """Inverse of `to_peft`: (config, swiftlite-named weights) from a PEFT checkpoint."""
        from .peft_format import from_peft

        return from_peft(cls, peft_config, weights, adapter_name)

    @classmethod
    def optimizer_param_groups(
        cls, model: nn.Module, config: SwiftConfig, params: dict[str, nn.Parameter], **defaults: Any
    ) -> list[dict[str, Any]] | None:
        """Param groups for this adapter's trainable `params` (name -> parameter); None = one group."""
        return None
