"""ms-swift's `use_merged_linear` / `enable_lora`: LoRA on some output chunks of a fused layer.

loralib's MergedLinear (Hu et al., 2021, arXiv:2106.09685, the authors' code): a fused projection
such as GPT-2's qkv `c_attn` is cut into n = len(enable_lora) equal output chunks, and only the k
enabled ones get an update::

    ΔW = s · B_full A        A ∈ R^{k·r×d_in},  B_full = blockdiag(B_1, ..., B_k) on the enabled
                             chunks' rows and 0 on the others, B_i ∈ R^{(d_out/n)×r}

so chunk i is updated by s · B_i A_i and a disabled chunk (e.g. k of qkv) keeps W0. Everything else
(forward, DoRA, merging) is `LoRALayer`'s: this file only says what B is.

Differences from ms-swift: none in the math; PEFT has no merged-linear LoRA, so such an adapter has
no PEFT format.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .lora import LoRAConfig, LoRALayer, LoRALinear
from .lora_layers import LoRAConv1D


class MergedLoRA:
    """Mixin over LoRALinear / LoRAConv1D: A is (k·r, d_in), B is (k·d_out/n, r), applied block-diagonally."""

    merged_chunks = True  # LoRATuner.inject refuses to mix merged and plain adapters on one layer

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.enable_lora: dict[str, list[bool]] = {}

    def add_adapter(self, adapter_name: str, config: LoRAConfig) -> None:
        n, d_out = len(config.enable_lora), self.dims()[1]
        if d_out % n:
            raise ValueError(f"LoRAConfig.enable_lora: {n} chunks do not divide out_features={d_out}")
        self.enable_lora[adapter_name] = [bool(e) for e in config.enable_lora]
        try:
            super().add_adapter(adapter_name, config)
        except BaseException:
            self.enable_lora.pop(adapter_name)
            raise

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.enable_lora.pop(adapter_name, None)

    def make_factors(self, config: LoRAConfig, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
        (d_in, d_out), r, k = self.dims(), config.r, sum(map(bool, config.enable_lora))
        return (nn.Linear(d_in, k * r, bias=False, device=device, dtype=dtype),
                nn.Linear(r, k * d_out // len(config.enable_lora), bias=False, device=device, dtype=dtype))

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """A (k·r, d_in) and the block matrix B_full (d_out, k·r): B_i on chunk i's rows, zeros elsewhere."""
        A, B, enable = self.lora_A[name].weight, self.lora_B[name].weight, self.enable_lora[name]
        rows = self.dims()[1] // len(enable)
        on = torch.tensor(enable, device=B.device).repeat_interleave(rows)  # (d_out,) rows that get LoRA
        B_full = B.new_zeros(len(on), A.shape[0])
        B_full[on] = torch.block_diag(*B.split(rows))  # (k·d_out/n, k·r)
        return A, B_full

    def apply_B(self, name: str, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.factors(name)[1])  # B_full z: (..., d_out), chunk by chunk


class LoRAMergedLinear(MergedLoRA, LoRALinear):
    pass


class LoRAMergedConv1D(MergedLoRA, LoRAConv1D):
    pass


def merged_layer_for(layer: type[LoRALayer], module: nn.Module) -> type[LoRALayer]:
    """The merged-chunk version of a plain LoRA layer class (Linear / Conv1D only)."""
    merged = {LoRALinear: LoRAMergedLinear, LoRAConv1D: LoRAMergedConv1D}.get(layer)
    if merged is None:
        raise ValueError(f"LoRAConfig.use_merged_linear applies to Linear / Conv1D layers, not "
                         f"{type(module).__name__}; leave it out of target_modules")
    return merged
