"""Where a tuner layer's forward leaves its plain PyTorch code for `swiftlite/kernels/` (one call each).

`lora_kernel_route(layer, x)` is asked first by `LoRALayer.forward`; None means the layer's own code.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .dispatch import triton_enabled
from .mixed_batch import current_adapter_batch, lora_mixed_forward


def lora_kernel_route(layer: Any, x: torch.Tensor) -> Callable[..., torch.Tensor] | None:
    """`lora_mixed_forward` inside a mixed-adapter batch; the fused LoRA linear when `use_triton` is on
    and the layer qualifies (`fused_lora.fused_lora_supports`); else None."""
    if current_adapter_batch() is not None:
        return lora_mixed_forward
    if triton_enabled():  # imported only then: fused_lora imports Triton
        from .fused_lora import fused_lora_forward, fused_lora_supports

        if fused_lora_supports(layer, x):
            return fused_lora_forward
    return None
