"""Optional Triton paths, each beside its PyTorch reference, and mixed-adapter batches.

    mixed_batch.py  one forward, one LoRA adapter per sample (`model(..., adapter_names=[...])`)
    bgmv.py         Triton: every row gathers its own A and B (vLLM's bgmv shrink / expand)
    fused_lora.py   Triton: y = x W0ᵀ + s·(x Aᵀ) Bᵀ and its backward, as an autograd.Function
    bottleneck.py   Triton: the SC-Tuner / adapter bottleneck x + W_up·GELU(W_down·x + b_d) + b_u
    dispatch.py     the global switch and the fallback rule
    routes.py       the one call a tuner layer's forward makes into this package

Everything is opt-in: `swiftlite.kernels.use_triton(True)` (or `SWIFTLITE_TRITON=1`). A kernel then
runs where Triton is installed and the tensors are on a CUDA GPU, or on CPU tensors in Triton's
interpreter when `TRITON_INTERPRET=1` was set before the kernel file was imported (set it before
`import swiftlite`); anywhere else its PyTorch reference runs, with one warning saying why.
This module imports neither torch nor Triton.
"""
from .dispatch import triton_enabled, use_triton

__all__ = ["triton_enabled", "use_triton"]
