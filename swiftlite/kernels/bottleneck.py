"""Fused bottleneck: SCEdit's SC-Tuner and the Houlsby adapter with a GELU, in one kernel.

    O = x + t · (W_up · GELU(W_down · x + b_d) + b_u)     x (M, d), W_down (m, d), W_up (d, m), t: tuner_scale

(SCEdit, Jiang et al., 2023, arXiv:2312.11392, eq. of the SC-Tuner; `tuners/scetuning.py` and
`tuners/adapter.py` compute it with two nn.Linear and an nn.GELU.) GELU is the exact one,
GELU(u) = u · Φ(u) = ½ u (1 + erf(u/√2)), as nn.GELU() computes it.

Forward in one Triton program per block of rows: the hidden u = W_down x + b_d (M, m) is built tile
by tile over d, stays in registers through the GELU, and is multiplied straight into the output
tiles, to which the residual x is added before the store; eager PyTorch writes and re-reads u,
GELU(u), W_up·GELU(u) and the sum. u is also stored, being the one thing the backward needs besides x.

Backward (PyTorch, from u and x; g = GELU(u), GELU'(u) = Φ(u) + u · φ(u), dO = ∂L/∂O)::

    dW_up = t · dOᵀ g      db_u = t · Σ_rows dO
    du    = t · (dO W_up) ⊙ GELU'(u)
    dW_down = duᵀ x        db_d = Σ_rows du
    dx    = dO + du W_down

Where it runs: `SCEAdapter.forward` routes here when `swiftlite.kernels.use_triton(True)` is on
(`bottleneck_module_forward`); `fused_bottleneck` takes the weights directly.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dispatch import KernelFile

KERNELS = KernelFile(__name__)  # Triton present? TRITON_INTERPRET=1 now, when the kernel below is defined?
triton, tl = KERNELS.triton, KERNELS.tl


# ---- the PyTorch reference ------------------------------------------------------------------------
def bottleneck_reference(x: torch.Tensor, W_down: torch.Tensor, b_down: torch.Tensor, W_up: torch.Tensor,
                         b_up: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """O = x + t · (W_up · GELU(W_down · x + b_d) + b_u), with PyTorch's autograd."""
    return x + scale * F.linear(F.gelu(F.linear(x, W_down, b_down)), W_up, b_up)


def _bottleneck_forward_reference(x, W_down, b_down, W_up, b_up, scale):
    u = F.linear(x, W_down, b_down)
    return x + scale * F.linear(F.gelu(u), W_up, b_up), u


# ---- the Triton kernel ------------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def _bottleneck_kernel(x_ptr, wd_ptr, bd_ptr, wu_ptr, bu_ptr, out_ptr, u_ptr, M, D, MID, scale,
                           stride_xm, stride_wd, stride_wu, stride_om, stride_um,
                           BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr):
        # Tiling: grid = (cdiv(M, BLOCK_M),); one program owns BLOCK_M rows end to end.
        #   pass 1, over d in tiles of BLOCK_D:  u[BLOCK_M × BLOCK_H] += x[BLOCK_M × BLOCK_D] · W_downᵀ[BLOCK_D × BLOCK_H]
        #   then in registers:                   g = GELU(u + b_d)          (BLOCK_H ≥ m: the bottleneck fits whole)
        #   pass 2, over d in tiles of BLOCK_D:  O[:, tile] = x[:, tile] + t · (g · W_upᵀ[BLOCK_H × BLOCK_D] + b_u[tile])
        # x is read twice (once per pass) and O written once; u is stored for the backward.
        pid = tl.program_id(0)
        offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_h = tl.arange(0, BLOCK_H)
        row_ok = offs_m[:, None] < M
        u = tl.zeros((BLOCK_M, BLOCK_H), dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_d[None, :], mask=row_ok & (offs_d[None, :] < D),
                        other=0.0)
            wdt = tl.load(wd_ptr + offs_h[None, :] * stride_wd + offs_d[:, None],
                          mask=(offs_h[None, :] < MID) & (offs_d[:, None] < D), other=0.0)
            # u += x W_downᵀ   (this strip of d)
            u += tl.dot(x, wdt, input_precision="ieee")
        # u = W_down x + b_d
        u += tl.load(bd_ptr + offs_h, mask=offs_h < MID, other=0.0).to(tl.float32)[None, :]
        tl.store(u_ptr + offs_m[:, None] * stride_um + offs_h[None, :], u.to(u_ptr.dtype.element_ty),
                 mask=row_ok & (offs_h[None, :] < MID))
        # g = GELU(u) = ½ u (1 + erf(u / √2))
        g = 0.5 * u * (1.0 + tl.math.erf(u * 0.7071067811865476))
        g = g.to(wu_ptr.dtype.element_ty)
        for d0 in range(0, D, BLOCK_D):
            offs_d = d0 + tl.arange(0, BLOCK_D)
            wut = tl.load(wu_ptr + offs_d[None, :] * stride_wu + offs_h[:, None],
                          mask=(offs_h[:, None] < MID) & (offs_d[None, :] < D), other=0.0)
            x = tl.load(x_ptr + offs_m[:, None] * stride_xm + offs_d[None, :], mask=row_ok & (offs_d[None, :] < D),
                        other=0.0).to(tl.float32)
            bu = tl.load(bu_ptr + offs_d, mask=offs_d < D, other=0.0).to(tl.float32)
            # O = x + t · (W_up g + b_u)
            o = x + scale * (tl.dot(g, wut, input_precision="ieee") + bu[None, :])
            tl.store(out_ptr + offs_m[:, None] * stride_om + offs_d[None, :], o.to(out_ptr.dtype.element_ty),
                     mask=row_ok & (offs_d[None, :] < D))


def _bottleneck_forward_triton(x, W_down, b_down, W_up, b_up, scale):
    (M, D), MID = x.shape, W_down.shape[0]
    x, W_down, W_up = x.contiguous(), W_down.contiguous(), W_up.contiguous()
    out = torch.empty_like(x)
    u = torch.empty(M, MID, device=x.device, dtype=x.dtype)
    BM = min(max(16, triton.next_power_of_2(M)), 32)
    _bottleneck_kernel[(triton.cdiv(M, BM),)](x, W_down, b_down, W_up, b_up, out, u, M, D, MID, float(scale),
                                              x.stride(0), W_down.stride(0), W_up.stride(0), out.stride(0), u.stride(0),
                                              BLOCK_M=BM, BLOCK_D=min(max(16, triton.next_power_of_2(D)), 64),
                                              BLOCK_H=max(16, triton.next_power_of_2(MID)))
    return out, u


class BottleneckFunction(torch.autograd.Function):
    """O = x + t·(W_up GELU(W_down x + b_d) + b_u), x (M, d): fused forward, the backward above."""

    @staticmethod
    def forward(ctx: Any, x, W_down, b_down, W_up, b_up, scale: float):
        if KERNELS.use("bottleneck", x, W_down, W_up):
            out, u = _bottleneck_forward_triton(x, W_down, b_down, W_up, b_up, scale)
        else:
            out, u = _bottleneck_forward_reference(x, W_down, b_down, W_up, b_up, scale)
        ctx.save_for_backward(x, W_down, W_up, u)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx: Any, dO: torch.Tensor):
        x, W_down, W_up, u = ctx.saved_tensors
        t = ctx.scale
        uf = u.float()
        g = F.gelu(uf).to(u.dtype)
        # GELU'(u) = Φ(u) + u · φ(u)
        dgelu = 0.5 * (1.0 + torch.erf(uf / math.sqrt(2.0))) + uf * torch.exp(-0.5 * uf * uf) / math.sqrt(2 * math.pi)
        # dW_up = t · dOᵀ g,   db_u = t · Σ dO
        dW_up, db_up = t * (dO.T @ g), t * dO.sum(0)
        # du = t · (dO W_up) ⊙ GELU'(u)
        du = (t * (dO @ W_up).float() * dgelu).to(x.dtype)
        # dW_down = duᵀ x,   db_d = Σ du
        dW_down, db_down = du.T @ x, du.sum(0)
        # dx = dO + du W_down
        dx = dO + du @ W_down
        return dx, dW_down, db_down, dW_up, db_up, None


def fused_bottleneck(x: torch.Tensor, W_down: torch.Tensor, b_down: torch.Tensor, W_up: torch.Tensor,
                     b_up: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """O = x + t·(W_up GELU(W_down x + b_d) + b_u) over the last axis of x (..., d)."""
    out = BottleneckFunction.apply(x.reshape(-1, x.shape[-1]), W_down, b_down, W_up, b_up, scale)
    return out.reshape(x.shape)


def bottleneck_module_forward(module: nn.Module, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """An `SCEAdapter` (ln1, GELU, ln2) through `fused_bottleneck`; channels on axis 1 of a (B, C, H, W) map,
    else the last axis, as `SCEAdapter.delta` reads them."""
    down, up = module.ln1, module.ln2
    h = x.to(down.weight.dtype)
    if h.dim() == 4:
        h = h.permute(0, 2, 3, 1)  # (B, C, H, W) -> (B, H, W, C)
    out = fused_bottleneck(h, down.weight, down.bias, up.weight, up.bias, scale)
    if x.dim() == 4:
        out = out.permute(0, 3, 1, 2)  # -> (B, C, H, W)
    return out.to(x.dtype)
