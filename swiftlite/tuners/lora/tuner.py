"""LoRATuner: how the LoRA family (see `lora.py` for the paper and the equation) is put on a model.

It sits on top of the package and is the only file that imports the others: it picks the layer
class for a module (`lora_layers.py`, `lora_merged.py`, `quantized.py`), builds LoRA+ optimizer groups
(`lora_plus.py`) and mixes adapters (`lora_weighted.py`). Registering it makes `LoRAConfig` usable
with `Swift.prepare_model`.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from ...core import Tuner, TunerLayer, register_tuner
from ...core.layer import canonical_name
from ...core.modules import with_transformers_conv1d
from ...core.peft_format import PeftSpec
from ...core.targeting import replace_module
from .lora import PEFT_UNSUPPORTED, LoRAConfig, LoRALayer
from .lora_layers import layer_class_for
from .lora_merged import merged_layer_for
from .lora_plus import loraplus_param_groups
from .lora_weighted import add_weighted_adapter
from .quantized import LoRAQuantizedLinear, backend_of, quantized_types


@register_tuner
class LoRATuner(Tuner):
    config_class = LoRAConfig
    layer_class = LoRALayer
    mergeable = True
    peft_type = "LORA"
    peft_spec = PeftSpec(
        containers=frozenset({"lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"}),
        fields=("r", "lora_alpha", "target_modules", "lora_dropout", "fan_in_fan_out", "bias", "use_rslora", "use_dora",
                "modules_to_save", "init_lora_weights", "rank_pattern", "alpha_pattern"),
        renames={"lora_magnitude_vector.weight": "lora_magnitude_vector"},  # PEFT's m is a bare parameter
        written={"lora_bias": False, "layers_to_transform": None, "layers_pattern": None, "exclude_modules": None},
        load_only=PEFT_UNSUPPORTED,
        accepted={"init_lora_weights": (True, False, "gaussian")},  # the others change W0 at init
        swift_only={"use_merged_linear": False},
    )

    @classmethod
    def supported_types(cls) -> tuple[type, ...]:
        return with_transformers_conv1d((nn.Linear, nn.Conv2d, nn.Embedding, *quantized_types()))  # HQQLinear: no nn.Linear

    @staticmethod
    def layer_for(module: nn.Module, config: LoRAConfig) -> type[LoRALayer]:
        if backend_of(module) is not None:  # a bitsandbytes / torchao / hqq layer (quantized.py)
            return LoRAQuantizedLinear
        layer = layer_class_for(module)  # LoRALinear, LoRAConv1D, LoRAConv2d or LoRAEmbedding
        return merged_layer_for(layer, module) if config.use_merged_linear else layer

    @classmethod
    def inject(cls, model: nn.Module, config: LoRAConfig, adapter_name: str) -> None:
        for name in cls.match(model, config):
            module = model.get_submodule(name)
            module_config = config.for_module(canonical_name(model, name))  # rank_pattern / alpha_pattern
            if isinstance(module, LoRALayer):
                if getattr(module, "merged_chunks", False) != bool(config.use_merged_linear):
                    raise ValueError(f"LoRAConfig.use_merged_linear={config.use_merged_linear}: {name!r} already "
                                     f"holds adapters with the other setting; use one setting per layer")
                module.add_adapter(adapter_name, module_config)
                continue
            if isinstance(module, TunerLayer):
                raise ValueError(f"LoRAConfig.target_modules: {name!r} is already wrapped by {type(module).__name__}; "
                                 f"add the LoRA adapter before that tuner")
            layer = cls.layer_for(module, config)(module)
            layer.add_adapter(adapter_name, module_config)
            replace_module(model, name, layer)

    @classmethod
    def optimizer_param_groups(cls, model: nn.Module, config: LoRAConfig, params: dict[str, nn.Parameter],
                               **defaults: Any) -> list[dict[str, Any]] | None:
        """LoRA+ groups when `lorap_lr_ratio` is set (see `lora_plus.py`); None: one plain group."""
        return None if config.lorap_lr_ratio is None else loraplus_param_groups(model, config, params, **defaults)

    @classmethod
    def add_weighted_adapter(cls, swift_model: Any, adapters: list[str], weights: list[float], adapter_name: str,
                             combination_type: str = "svd", svd_rank: int | None = None) -> None:
        """PEFT's `add_weighted_adapter` ("linear" or "svd"); see `lora_weighted.py`."""
        add_weighted_adapter(swift_model, adapters, weights, adapter_name, combination_type, svd_rank)
