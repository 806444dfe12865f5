"""Fused LoRA linear: forward and a hand-derived backward, as one autograd.Function.

    y = x W0ᵀ + b + s · (x Aᵀ) Bᵀ        x (M, d_in), W0 (d_out, d_in) frozen, A (r, d_in), B (d_out, r)

Backward, by the chain rule (unsloth's `fast_lora.py` derives the same in its docstrings). With
z = x Aᵀ (M, r) kept from the forward and dy = ∂L/∂y (M, d_out)::

    dB = s · dyᵀ z          (d_out, r)      y depends on B only through s·z Bᵀ
    dz = s · dy B           (M, r)
    dA = dzᵀ x              (r, d_in)       z = x Aᵀ
    dx = dy W0 + dz A       (M, d_in)       both paths from x to y
    (no dW0, no db: the base layer is frozen)

Both big products have the same shape, "a matmul plus a rank-r correction":

    forward:   y  = x  · W0ᵀ + s · z  · Bᵀ  (+ b)
    backward:  dx = dy · W0  + 1 · dz · A

so one Triton kernel, `matmul_lowrank(X, W, Z, U, s) = X Wᵀ + s · Z Uᵀ (+ b)`, computes both, adding the
low-rank term to each output tile while it is still in registers (eager PyTorch writes X Wᵀ, reads it
back, writes the sum). The skinny products (z, dz, dA, dB) stay torch matmuls, as in unsloth.
Saved for backward: x and z (eager autograd keeps x, x's dropout output and z), W0 is not copied.

Where it runs: `LoRALayer.forward` routes here when `swiftlite.kernels.use_triton(True)` is on, the
layer wraps an nn.Linear, exactly one adapter is active, and it has no DoRA, no dropout in training,
one dtype throughout, and a frozen base weight; otherwise the layer's own forward runs.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dispatch import KernelFile

KERNELS = KernelFile(__name__)  # Triton present? TRITON_INTERPRET=1 now, when the kernel below is defined?
triton, tl = KERNELS.triton, KERNELS.tl


# ---- the PyTorch reference ------------------------------------------------------------------------
def lora_linear_reference(x: torch.Tensor, W0: torch.Tensor, b: torch.Tensor | None, A: torch.Tensor,
                          B: torch.Tensor, s: float) -> torch.Tensor:
    """y = x W0ᵀ + b + s · (x Aᵀ) Bᵀ with PyTorch's autograd (the reference for values and gradients)."""
    return F.linear(x, W0, b) + s * F.linear(F.linear(x, A), B)


def matmul_lowrank_reference(X, W, Z, U, s, bias=None):
    """X Wᵀ + s · Z Uᵀ (+ bias), in PyTorch."""
    out = X @ W.T + s * (Z @ U.T)
    return out if bias is None else out + bias


# ---- the Triton kernel ------------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def _matmul_lowrank_kernel(x_ptr, w_ptr, z_ptr, u_ptr, bias_ptr, out_ptr, M, N, K, R, s,
                               stride_xm, stride_xk, stride_wn, stride_wk, stride_zm, stride_zr,
                               stride_un, stride_ur, stride_om, stride_on,
                               HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                               BLOCK_K: tl.constexpr, BLOCK_R: tl.constexpr):
        # Tiling: grid = (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)); program (i, j) owns one output tile
        #
        #            K                      N                         R                N
        #   X  [BLOCK_M × BLOCK_K] ─┐   Wᵀ [BLOCK_K × BLOCK_N]     Z [BLOCK_M × BLOCK_R] · Uᵀ [BLOCK_R × BLOCK_N]
        #   walk K in steps of BLOCK_K: acc += X_tile · Wᵀ_tile     then once: acc += s · Z_tile · Uᵀ_tile
        #
        # acc (BLOCK_M × BLOCK_N, fp32) never leaves the program until the store: the rank-r correction
        # and the bias are added in registers. BLOCK_R holds the whole (small) rank. Wᵀ and Uᵀ are read
        # through strides, so W0ᵀ in the backward is the same memory as W0. Masks cut partial edge tiles.
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_r = tl.arange(0, BLOCK_R)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_k[None, :] * stride_xk,
                        mask=(offs_m[:, None] < M) & (offs_k[None, :] < K), other=0.0)
            wt = tl.load(w_ptr + offs_k[:, None] * stride_wk + offs_n[None, :] * stride_wn,
                         mask=(offs_k[:, None] < K) & (offs_n[None, :] < N), other=0.0)
            # acc += X Wᵀ   (this K strip)
            acc += tl.dot(x, wt, input_precision="ieee")
        z = tl.load(z_ptr + offs_m[:, None] * stride_zm + offs_r[None, :] * stride_zr,
                    mask=(offs_m[:, None] < M) & (offs_r[None, :] < R), other=0.0)
        ut = tl.load(u_ptr + offs_r[:, None] * stride_ur + offs_n[None, :] * stride_un,
                     mask=(offs_r[:, None] < R) & (offs_n[None, :] < N), other=0.0)
        # acc += s · Z Uᵀ   (the LoRA term: s·(x Aᵀ) Bᵀ forward, dz A backward)
        acc += s * tl.dot(z, ut, input_precision="ieee")
        if HAS_BIAS:
            acc += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
        tl.store(out_ptr + offs_m[:, None] * stride_om + offs_n[None, :] * stride_on,
                 acc.to(out_ptr.dtype.element_ty), mask=(offs_m[:, None] < M) & (offs_n[None, :] < N))


def _block(n: int, cap: int) -> int:
    return min(max(16, triton.next_power_of_2(n)), cap)  # tl.dot needs tiles of at least 16


def _matmul_lowrank_triton(X, W, Z, U, s, bias=None):
    (M, K), N, R = X.shape, W.shape[0], Z.shape[1]
    out = torch.empty(M, N, device=X.device, dtype=X.dtype)
    BM, BN, BK = _block(M, 64), _block(N, 64), _block(K, 32)
    grid = (triton.cdiv(M, BM), triton.cdiv(N, BN))
    _matmul_lowrank_kernel[grid](X, W, Z, U, bias if bias is not None else X, out, M, N, K, R, float(s),
                                 X.stride(0), X.stride(1), W.stride(0), W.stride(1), Z.stride(0), Z.stride(1),
                                 U.stride(0), U.stride(1), out.stride(0), out.stride(1), HAS_BIAS=bias is not None,
                                 BLOCK_M=BM, BLOCK_N=BN, BLOCK_K=BK, BLOCK_R=max(16, triton.next_power_of_2(R)))
    return out


def tile_map(M: int, N: int, block_m: int, block_n: int) -> torch.Tensor:
    """The tiling picture of `_matmul_lowrank_kernel`: the program that writes each element of the
    (M, N) output, numbered row-major over its grid (cdiv(M, block_m), cdiv(N, block_n)). The last row
    and column of programs also cover padding beyond M and N, which their masks leave unwritten."""
    i = torch.arange(M)[:, None] // block_m
    j = torch.arange(N)[None, :] // block_n
    return i * -(-N // block_n) + j  # (M, N)


# ---- the dispatcher ---------------------------------------------------------------------------------
def matmul_lowrank(X: torch.Tensor, W: torch.Tensor, Z: torch.Tensor, U: torch.Tensor, s: float,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """X Wᵀ + s · Z Uᵀ (+ bias): the Triton kernel when `use_triton` is on and it can run, else PyTorch.
    X (M, K), W (N, K), Z (M, R), U (N, R), bias (N,); any strides."""
    if KERNELS.use("matmul_lowrank", X, W, Z, U):
        return _matmul_lowrank_triton(X, W, Z, U, s, bias)
    return matmul_lowrank_reference(X, W, Z, U, s, bias)


class LoRALinearFunction(torch.autograd.Function):
    """y = x W0ᵀ + b + s·(x Aᵀ) Bᵀ with the backward above (W0 and b get no gradient). x is (M, d_in)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, W0: torch.Tensor, b: torch.Tensor | None, A: torch.Tensor,
                B: torch.Tensor, s: float) -> torch.Tensor:
        z = x @ A.T  # (M, r)
        ctx.save_for_backward(x, W0, A, B, z)
        ctx.s = s
        # y = x W0ᵀ + s · z Bᵀ + b
        return matmul_lowrank(x, W0, z, B, s, b)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor):
        x, W0, A, B, z = ctx.saved_tensors
        s = ctx.s
        dy = dy.contiguous()
        # dB = s · dyᵀ z
        dB = s * (dy.T @ z)
        # dz = s · dy B
        dz = s * (dy @ B)
        # dA = dzᵀ x
        dA = dz.T @ x
        # dx = dy W0 + dz A  =  dy (W0ᵀ)ᵀ + 1 · dz (Aᵀ)ᵀ: the forward's kernel again, on transposed views
        dx = matmul_lowrank(dy, W0.T, dz, A.T, 1.0) if ctx.needs_input_grad[0] else None
        return dx, None, None, dA, dB, None


def lora_linear(x: torch.Tensor, W0: torch.Tensor, b: torch.Tensor | None, A: torch.Tensor, B: torch.Tensor,
                s: float) -> torch.Tensor:
    """The fused LoRA linear on x of any leading shape (..., d_in) -> (..., d_out)."""
    y = LoRALinearFunction.apply(x.reshape(-1, x.shape[-1]), W0, b, A, B, s)
    return y.reshape(*x.shape[:-1], W0.shape[0])


# ---- a LoRA layer through the fused function ----------------------------------------------------------
def fused_lora_supports(layer: nn.Module, x: torch.Tensor) -> bool:
    """Can `layer` (a LoRALayer) run through `lora_linear` now? See the module docstring."""
    base = layer.base_layer
    if not isinstance(base, nn.Linear) or getattr(layer, "embedding", True) or getattr(layer, "merged_chunks", False):
        return False
    if getattr(layer, "merges_quantized", False):  # a quantized base (tuners/lora/quantized.py): no dense W0
        return False
    active = layer.active_adapters
    if len(active) != 1 or layer.use_dora[active[0]] or base.weight.requires_grad:
        return False
    name = active[0]
    dropout = layer.lora_dropout[name]
    if layer.training and isinstance(dropout, nn.Dropout) and dropout.p > 0:
        return False
    A, B = layer.factors(name)
    return x.dtype == base.weight.dtype == A.dtype == B.dtype


def fused_lora_forward(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`LoRALayer.forward` through `lora_linear` (called only when `fused_lora_supports` said yes)."""
    name = layer.active_adapters[0]
    A, B = layer.factors(name)
    return lora_linear(x, layer.base_layer.weight, layer.base_layer.bias, A, B, layer.scaling[name])
