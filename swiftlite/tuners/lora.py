"""LoRA: Low-Rank Adaptation of Large Language Models (Hu et al., 2021, arXiv:2106.09685).

A frozen weight W0 gets a trainable low-rank update::

    h = W0 x + (alpha / r) · B A x          A ∈ R^{r×d_in}, B ∈ R^{d_out×r}, B = 0 at init

so the model is unchanged at initialisation, and `W0 + (alpha/r)·B A` can be merged into W0 for
inference at no extra cost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.layer import check_finite


@dataclass
class LoRAConfig(SwiftConfig):
    """Field names and defaults follow ms-swift's `LoRAConfig` (which extends PEFT's `LoraConfig`)."""

    swift_type: str = field(default="LORA")
    r: int = 8  # rank of the update
    target_modules: Any = None  # regex (full match) or list of names / dotted suffixes
    lora_alpha: int = 8  # scaling = lora_alpha / r
    lora_dropout: float = 0.0  # dropout on the input of A
    fan_in_fan_out: bool = False
    bias: str = "none"
    use_rslora: bool = False  # rsLoRA: scaling = lora_alpha / sqrt(r)
    modules_to_save: Any = None  # extra modules trained in full (e.g. a new head)
    init_lora_weights: Any = True  # True: B = 0 (identity at init); False: random B (for tests)
    use_dora: bool = False  # DoRA: learn a magnitude vector as well
    use_qa_lora: bool = False
    use_merged_linear: bool = False
    enable_lora: Any = None
    lora_dtype: str | None = None  # None: same dtype as the base layer
    lorap_lr_ratio: float | None = None  # LoRA+: lr(B) = ratio · lr(A)
    lorap_emb_lr: float = 1e-6  # LoRA+: lr of embedding A/B

    def validate(self) -> None:
        self._require(isinstance(self.r, int) and self.r > 0, "r", f"must be a positive int, got {self.r!r}")
        self._require(self.target_modules is not None, "target_modules",
                      "is required: a regex such as r'.*(q_proj|v_proj)' or a list such as ['q_proj', 'v_proj']")
        self._require(0.0 <= self.lora_dropout < 1.0, "lora_dropout", f"must be in [0, 1), got {self.lora_dropout!r}")
        self._require(self.bias == "none", "bias", f"only 'none' is supported, got {self.bias!r}")
        self._require(self.lorap_lr_ratio is None or self.lorap_lr_ratio > 0, "lorap_lr_ratio",
                      f"must be positive or None, got {self.lorap_lr_ratio!r}")


class LoRALinear(TunerLayer):
    adapter_attrs = ("lora_A", "lora_B", "lora_dropout")

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__(base_layer)
        self.lora_A = nn.ModuleDict()
        self.lora_B = nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}

    def add_adapter(self, adapter_name: str, config: LoRAConfig) -> None:
        device, dtype = self._base_device_dtype()
        r = config.r
        self.lora_A[adapter_name] = nn.Linear(self.base_layer.in_features, r, bias=False, device=device, dtype=dtype)
        self.lora_B[adapter_name] = nn.Linear(r, self.base_layer.out_features, bias=False, device=device, dtype=dtype)
        self.lora_dropout[adapter_name] = nn.Dropout(config.lora_dropout) if config.lora_dropout else nn.Identity()
        self.scaling[adapter_name] = config.lora_alpha / (math.sqrt(r) if config.use_rslora else r)
        nn.init.kaiming_uniform_(self.lora_A[adapter_name].weight, a=math.sqrt(5))
        if config.init_lora_weights is False:
            nn.init.normal_(self.lora_B[adapter_name].weight, std=0.02)
        else:
            nn.init.zeros_(self.lora_B[adapter_name].weight)  # B = 0: identity at init

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.scaling.pop(adapter_name, None)

    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        # ΔW = (alpha / r) · B A        (d_out, d_in)
        return self.scaling[adapter_name] * self.lora_B[adapter_name].weight @ self.lora_A[adapter_name].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.base_layer(x)
        for name in self.active_adapters:
            # h = W0 x + (alpha / r) · B A x
            h = h + self.lora_B[name](self.lora_A[name](self.lora_dropout[name](x))) * self.scaling[name]
        return h

    mergeable = True

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        merged = self.base_layer.weight.data + self.delta_weight(adapter_name).detach()
        if safe_merge:
            check_finite(merged, f"LoRA adapter {adapter_name!r}")
        self.base_layer.weight.data = merged

    def unmerge(self, adapter_name: str) -> None:
        self.base_layer.weight.data -= self.delta_weight(adapter_name).detach()


@register_tuner
class LoRATuner(Tuner):
    config_class = LoRAConfig
    layer_class = LoRALinear
    target_types = (nn.Linear,)
    mergeable = True
