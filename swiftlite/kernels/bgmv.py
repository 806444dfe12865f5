"""bgmv: batched gather matrix-vector products, the LoRA update of a mixed-adapter batch in one launch.

Punica / vLLM's multi-LoRA kernels (Chen et al., 2023, "Punica: Multi-Tenant LoRA Serving",
arXiv:2310.18547; vLLM's `bgmv_shrink` / `bgmv_expand`). Every row n of the flattened input (one token)
carries the index i_n of its adapter (-1: none), and gathers that adapter's factors itself::

    shrink:  z_n = s_{i_n} · A_{i_n} x_n        A stacked (L, r_max, d_in), z (N, r_max)
    expand:  y_n = B_{i_n} z_n                  B stacked (L, d_out, r_max), y (N, d_out)
    (i_n = -1: z_n = 0, y_n = 0, the row keeps the base layer's output)

Adapters of different rank are zero-padded to r_max (the padded rows of A and columns of B are 0, so
they add nothing). Where PEFT loops over adapters (one gather + two matmuls each, `mixed_batch.py`),
this is two launches for any number of adapters.

Differences from vLLM: no split-K and no slices (one Linear at a time); the scaling is one value per
adapter read in the shrink; the stacks are built on every call (vLLM keeps them resident).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .dispatch import KernelFile

KERNELS = KernelFile(__name__)  # Triton present? TRITON_INTERPRET=1 now, when the kernels below are defined?
triton, tl = KERNELS.triton, KERNELS.tl


# ---- the PyTorch reference ------------------------------------------------------------------------
def bgmv_shrink_reference(x: torch.Tensor, A: torch.Tensor, idx: torch.Tensor, scaling: torch.Tensor) -> torch.Tensor:
    """z_n = s_{i_n} · A_{i_n} x_n (0 where i_n = -1).  x (N, d_in), A (L, r, d_in), idx (N,), scaling (L,)."""
    keep = idx >= 0
    safe = idx.clamp(min=0).long()
    z = torch.einsum("nrd,nd->nr", A[safe].float(), x.float()) * scaling[safe].float()[:, None]  # (N, r)
    return (z * keep[:, None]).to(A.dtype)


def bgmv_expand_reference(z: torch.Tensor, B: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """y_n = B_{i_n} z_n (0 where i_n = -1).  z (N, r), B (L, d_out, r), idx (N,)."""
    keep = idx >= 0
    y = torch.einsum("nor,nr->no", B[idx.clamp(min=0).long()].float(), z.float())  # (N, d_out)
    return (y * keep[:, None]).to(B.dtype)


# ---- the Triton kernels -----------------------------------------------------------------------------
if triton is not None:

    @triton.jit
    def _bgmv_shrink_kernel(x_ptr, a_ptr, idx_ptr, scaling_ptr, z_ptr, D_IN, R,
                            stride_xn, stride_al, stride_ar, stride_zn,
                            BLOCK_R: tl.constexpr, BLOCK_K: tl.constexpr):
        # Tiling: one program per row n (grid = (N,)). The program holds the whole rank in one block
        # (BLOCK_R = r_max rounded up to a power of two, ≥ 16) and walks d_in in tiles of BLOCK_K:
        #
        #        x_n  [ k0 .. k0+BLOCK_K )           one strip of the row
        #   A_i  [ BLOCK_R × BLOCK_K ] tile           the same columns of its adapter's A
        #   acc += Σ_k A_i[:, k] · x_n[k]             (BLOCK_R,) partial sums, kept in fp32
        #
        # Masks cut the last, partial tile of d_in and the padded rank rows; a row without an adapter
        # (i_n = -1) returns at once and its z stays 0.
        n = tl.program_id(0)
        i = tl.load(idx_ptr + n)
        if i < 0:
            return
        i = i.to(tl.int64)
        offs_r = tl.arange(0, BLOCK_R)
        acc = tl.zeros((BLOCK_R,), dtype=tl.float32)
        for k0 in range(0, D_IN, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_ptr + n * stride_xn + offs_k, mask=offs_k < D_IN, other=0.0).to(tl.float32)
            a = tl.load(a_ptr + i * stride_al + offs_r[:, None] * stride_ar + offs_k[None, :],
                        mask=(offs_r[:, None] < R) & (offs_k[None, :] < D_IN), other=0.0).to(tl.float32)
            acc += tl.sum(a * x[None, :], axis=1)
        s = tl.load(scaling_ptr + i).to(tl.float32)
        # z_n = s_i · A_i x_n
        tl.store(z_ptr + n * stride_zn + offs_r, (acc * s).to(z_ptr.dtype.element_ty), mask=offs_r < R)

    @triton.jit
    def _bgmv_expand_kernel(z_ptr, b_ptr, idx_ptr, y_ptr, D_OUT, R,
                            stride_zn, stride_bl, stride_bo, stride_yn,
                            BLOCK_N: tl.constexpr, BLOCK_R: tl.constexpr):
        # Tiling: grid = (N, cdiv(d_out, BLOCK_N)); program (n, j) writes y_n[j·BLOCK_N : (j+1)·BLOCK_N).
        # z_n (BLOCK_R,) is loaded whole (the rank is small); the B tile is [BLOCK_N × BLOCK_R]:
        #
        #   y_n[tile] = Σ_r B_i[tile, r] · z_n[r]
        n = tl.program_id(0)
        j = tl.program_id(1)
        i = tl.load(idx_ptr + n)
        if i < 0:
            return
        i = i.to(tl.int64)
        offs_r = tl.arange(0, BLOCK_R)
        offs_o = j * BLOCK_N + tl.arange(0, BLOCK_N)
        z = tl.load(z_ptr + n * stride_zn + offs_r, mask=offs_r < R, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + i * stride_bl + offs_o[:, None] * stride_bo + offs_r[None, :],
                    mask=(offs_o[:, None] < D_OUT) & (offs_r[None, :] < R), other=0.0).to(tl.float32)
        # y_n = B_i z_n
        y = tl.sum(b * z[None, :], axis=1)
        tl.store(y_ptr + n * stride_yn + offs_o, y.to(y_ptr.dtype.element_ty), mask=offs_o < D_OUT)


def _block(n: int) -> int:
    return max(16, triton.next_power_of_2(n))  # tl.arange needs a power of two; ≥ 16 as GPUs want


def _bgmv_shrink_triton(x, A, idx, scaling):
    N, d_in = x.shape
    R = A.shape[1]
    x, A = x.contiguous(), A.contiguous()
    z = torch.zeros(N, R, device=x.device, dtype=A.dtype)
    _bgmv_shrink_kernel[(N,)](x, A, idx, scaling, z, d_in, R, x.stride(0), A.stride(0), A.stride(1), z.stride(0),
                              BLOCK_R=_block(R), BLOCK_K=min(_block(d_in), 128))
    return z


def _bgmv_expand_triton(z, B, idx):
    N, R = z.shape
    d_out = B.shape[1]
    z, B = z.contiguous(), B.contiguous()
    y = torch.zeros(N, d_out, device=z.device, dtype=B.dtype)
    block_n = min(_block(d_out), 64)
    _bgmv_expand_kernel[(N, triton.cdiv(d_out, block_n))](z, B, idx, y, d_out, R, z.stride(0), B.stride(0),
                                                          B.stride(1), y.stride(0), BLOCK_N=block_n, BLOCK_R=_block(R))
    return y


# ---- the dispatchers --------------------------------------------------------------------------------
def bgmv_shrink(x: torch.Tensor, A: torch.Tensor, idx: torch.Tensor, scaling: torch.Tensor) -> torch.Tensor:
    """z_n = s_{i_n} · A_{i_n} x_n: Triton when `use_triton` is on and it can run, else the reference."""
    if KERNELS.use("bgmv_shrink", x, A):
        return _bgmv_shrink_triton(x, A, idx.to(torch.int32), scaling.float())
    return bgmv_shrink_reference(x, A, idx, scaling)


def bgmv_expand(z: torch.Tensor, B: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """y_n = B_{i_n} z_n: Triton when `use_triton` is on and it can run, else the reference."""
    if KERNELS.use("bgmv_expand", z, B):
        return _bgmv_expand_triton(z, B, idx.to(torch.int32))
    return bgmv_expand_reference(z, B, idx)


# ---- a LoRA layer's mixed batch through bgmv ---------------------------------------------------------
def bgmv_supports(layer: nn.Module) -> bool:
    """A LoRA layer whose A and B are nn.Linear (LoRA on Linear or transformers' Conv1D), one block of
    outputs (not ms-swift's merged-linear chunks)."""
    return (not getattr(layer, "embedding", True) and not getattr(layer, "merged_chunks", False)
            and all(isinstance(layer.lora_A[n], nn.Linear) for n in layer.scaling))


def stack_adapters(layer: nn.Module, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A (L, r_max, d_in), B (L, d_out, r_max) zero-padded to the largest rank, and scaling (L,)."""
    factors = [layer.factors(name) for name in names]  # (r, d_in), (d_out, r) each
    r_max = max(a.shape[0] for a, _ in factors)
    A = torch.stack([nn.functional.pad(a, (0, 0, 0, r_max - a.shape[0])) for a, _ in factors])
    B = torch.stack([nn.functional.pad(b, (0, r_max - b.shape[1])) for _, b in factors])
    scaling = torch.tensor([layer.scaling[name] for name in names], device=A.device)
    return A, B, scaling


def bgmv_lora_delta(layer: nn.Module, x: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """s_a · B_a A_a x for each sample's adapter a (0 for "__base__" or an adapter this layer lacks):
    the rows of a sample are all its tokens. x (n, ..., d_in) -> (n, ..., d_out)."""
    held = [n for n in dict.fromkeys(names) if n in layer.scaling]
    A, B, scaling = stack_adapters(layer, held)
    per_sample = torch.tensor([held.index(n) if n in held else -1 for n in names], device=x.device)
    rows = x.reshape(-1, x.shape[-1])  # (N, d_in), N = n · tokens per sample
    idx = per_sample.repeat_interleave(rows.shape[0] // x.shape[0])  # i_n for every token
    z = bgmv_shrink(rows.to(A.dtype), A, idx, scaling)  # (N, r_max)
    y = bgmv_expand(z, B, idx)  # (N, d_out)
    return y.reshape(*x.shape[:-1], y.shape[-1])
