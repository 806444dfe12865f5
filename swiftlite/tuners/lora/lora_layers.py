"""LoRA on the layer types other than nn.Linear: what A and B are for each (`lora.py` has the math).

    h = W0 x + s · B A x        written once, in `LoRALayer.forward`

- transformers' Conv1D (GPT-2): W0 stored transposed (d_in, d_out); A, B as for nn.Linear.
- nn.Conv2d: A is a conv with W0's kernel / stride / padding / dilation to r channels, B a 1×1 conv
  from r channels to d_out: B A x is then the conv of x with ΔW = B A (reshaped to W0's kernel).
- nn.Embedding: A (r, num_embeddings) is looked up like an embedding table (A[:, x]), then B
  (embedding_dim, r) maps it; token ids get no dropout.

A subclass only says how A and B are built (`make_factors`), applied (`apply_A`, `apply_B`: only
Embedding differs) and laid out as matrices (`factors_of`, `to_weight_layout`), and where W0's
output features sit (`out_axis`).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core.modules import transformers_conv1d
from .lora import LoRAConfig, LoRALayer, LoRALinear


class LoRAConv1D(LoRALinear):
    """transformers' Conv1D (GPT-2): y = x W + b with W stored (d_in, d_out), i.e. fan_in_fan_out."""

    out_axis = 1

    def dims(self) -> tuple[int, int]:
        return tuple(self.base_layer.weight.shape)

    def to_weight_layout(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.T  # (d_out, d_in) -> (d_in, d_out)

    def base_forward_no_bias(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.base_layer.weight


class LoRAConv2d(LoRALinear):
    def make_factors(self, config: LoRAConfig, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
        conv, r = self.base_layer, config.r
        if conv.groups != 1:
            raise ValueError(f"LoRAConfig.target_modules: Conv2d with groups={conv.groups} is not supported "
                             f"(ΔW = B A needs groups=1); leave this layer out of target_modules")
        A = nn.Conv2d(conv.in_channels, r, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                      bias=False, padding_mode=conv.padding_mode, device=device, dtype=dtype)
        return A, nn.Conv2d(r, conv.out_channels, 1, bias=False, device=device, dtype=dtype)

    def _column_norm(self, weight: torch.Tensor) -> torch.Tensor:
        return super()._column_norm(weight).view(1, -1, 1, 1)  # PEFT's shape for a conv's m

    def base_forward_no_bias(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer._conv_forward(x, self.base_layer.weight, None)


class LoRAEmbedding(LoRALayer):
    """A (r, num_embeddings) is looked up like an embedding table, then mapped by B (embedding_dim, r)."""

    adapter_attrs = ("lora_embedding_A", "lora_embedding_B", "lora_dropout", "lora_magnitude_vector")
    out_axis = 1  # W0 is (num_embeddings, embedding_dim)
    embedding = True

    def make_factors(self, config: LoRAConfig, device: torch.device, dtype: torch.dtype
                     ) -> tuple[nn.Parameter, nn.Parameter]:
        (n, d), r = self.base_layer.weight.shape, config.r
        return (nn.Parameter(torch.empty(r, n, device=device, dtype=dtype)),
                nn.Parameter(torch.empty(d, r, device=device, dtype=dtype)))

    def apply_A(self, name: str, x: torch.Tensor) -> torch.Tensor:
        e = self.base_layer
        return F.embedding(x, self.lora_embedding_A[name].T, e.padding_idx, e.max_norm, e.norm_type,
                           e.scale_grad_by_freq, e.sparse)  # A[:, x]: (..., r)

    def apply_B(self, name: str, z: torch.Tensor) -> torch.Tensor:
        return z @ self.lora_embedding_B[name].T  # (..., embedding_dim)

    def factors_of(self, A: Any, B: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return A, B

    def to_weight_layout(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.T  # (embedding_dim, num_embeddings) -> (num_embeddings, embedding_dim)

    def base_forward_no_bias(self, x: torch.Tensor) -> torch.Tensor:
        return self.base_layer(x)


def layer_class_for(module: nn.Module) -> type[LoRALayer]:
    """The LoRA layer class for `module`'s type (subclasses of these types too)."""
    kinds = ((nn.Conv2d, LoRAConv2d), (nn.Embedding, LoRAEmbedding), (transformers_conv1d(), LoRAConv1D),
             (nn.Linear, LoRALinear))
    return next(layer for kind, layer in kinds if kind is not None and isinstance(module, kind))
