"""NF4 written out in plain PyTorch, to learn the format (QLoRA: Dettmers et al., 2023, arXiv:2305.14314, §3).

The library's 4-bit layer (bitsandbytes `Linear4bit`) is what swiftlite trains on; this file only shows
what it stores, and `tests/test_quantized.py` checks it against bitsandbytes' dequantized weights.

1. The code book: 16 values q_i placed at quantiles of N(0, 1), scaled to [-1, 1], with an exact zero
   (8 positive, 7 negative values: "NormalFloat", optimal for normally distributed weights)::

       q_i = Φ⁻¹(p_i) / Φ⁻¹(δ)        p_i evenly spaced in [1 - δ, δ], δ = 0.9677083 (bitsandbytes' offset)

2. Blockwise absmax: W is flattened and cut into blocks of 64; each block b is scaled by its absmax
   c_b = max|W_b| into [-1, 1], and each weight is stored as the index of the nearest code value::

       idx = argmin_i | W / c_b - q_i |        (4 bits; two indices packed in one byte)
       deq(W) = q_idx · c_b

3. Double quantization: the absmax constants c_b (one float32 per 64 weights = 0.5 bit / weight) are
   themselves quantized to 8 bits in blocks of 256, after subtracting their mean::

       c_b ≈ code2[j] · c2_B + mean(c)        (0.5 → 8/64 + 32/(64·256) = 0.127 bit / weight)

   bitsandbytes' 8-bit code book `code2` is its "dynamic" map (a float-like 8-bit type); by default this
   file uses a plain linear 8-bit code (255 evenly spaced values in [-1, 1]); pass bitsandbytes' own
   `quant_state.state2.code` to reproduce its numbers exactly.

Differences from bitsandbytes: readable, slow (argmin over the 16 values per weight); the 8-bit code of
the double quantization is linear unless given; no FP4.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

NF4_OFFSET = 0.9677083  # δ: the outermost quantile (bitsandbytes' create_normal_map default)


def nf4_code_book(offset: float = NF4_OFFSET) -> torch.Tensor:
    """The 16 NF4 values, ascending, from -1 to 1 with an exact 0 (float32)."""
    # q_i = Φ⁻¹(p_i): 8 positive quantiles from δ down to 1/2 (excluded), 7 negative ones mirrored
    positive = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])  # (8,)
    negative = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])  # (7,)
    code = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values  # (16,)
    return (code / code.abs().max()).float()  # scaled to [-1, 1]


def linear_code(bits: int = 8) -> torch.Tensor:
    """2^bits - 1 evenly spaced values in [-1, 1] (zero included): the default 8-bit code for the absmax."""
    return torch.linspace(-1, 1, 2 ** bits - 1)


def absmax_quantize(x: torch.Tensor, code: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise absmax quantization of flat `x` onto `code`: (indices (n,) uint8, absmax (n_blocks,))."""
    pad = (-x.numel()) % blocksize  # the last block may be short: pad with zeros
    blocks = torch.nn.functional.pad(x.flatten().float(), (0, pad)).view(-1, blocksize)  # (n_blocks, blocksize)
    # c_b = max |W_b|
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    normed = blocks / absmax.clamp_min(torch.finfo(torch.float32).tiny)[:, None]  # in [-1, 1]
    # idx = argmin_i |W / c_b - q_i|
    idx = (normed[..., None] - code).abs().argmin(dim=-1)  # (n_blocks, blocksize)
    return idx.flatten()[:x.numel()].to(torch.uint8), absmax


def absmax_dequantize(idx: torch.Tensor, absmax: torch.Tensor, code: torch.Tensor, blocksize: int) -> torch.Tensor:
    """The inverse: code[idx] · c_b, flat (n,)."""
    values = code[idx.long()]  # (n,)
    scale = absmax.repeat_interleave(blocksize)[:values.numel()]  # one c_b per weight
    # deq(W) = q_idx · c_b
    return values * scale


def pack_4bit(idx: torch.Tensor) -> torch.Tensor:
    """Two 4-bit indices per byte, the first in the high nibble (bitsandbytes' order)."""
    idx = torch.nn.functional.pad(idx, (0, idx.numel() % 2))
    return (idx[0::2] << 4) | idx[1::2]


def unpack_4bit(packed: torch.Tensor, n: int) -> torch.Tensor:
    return torch.stack([packed >> 4, packed & 0xF], dim=1).flatten()[:n]


@dataclass
class NF4Weight:
    """What a 4-bit NF4 weight stores (the fields of bitsandbytes' Params4bit + QuantState)."""

    packed: torch.Tensor  # (numel/2,) uint8: two code-book indices per byte
    absmax: torch.Tensor  # (n_blocks,) float32 c_b; with double quantization: uint8 indices into code2
    shape: torch.Size
    blocksize: int = 64
    # double quantization (None without): c_b ≈ code2[absmax] · absmax2 + offset
    absmax2: torch.Tensor | None = None  # (n_blocks / 256,) float32
    code2: torch.Tensor | None = None  # the 8-bit code book
    offset: float = 0.0  # mean(c), subtracted before the second quantization
    blocksize2: int = 256

    def dequantize(self) -> torch.Tensor:
        absmax = self.absmax
        if self.absmax2 is not None:
            # c_b ≈ code2[j] · c2_B + mean(c)
            absmax = absmax_dequantize(self.absmax, self.absmax2, self.code2, self.blocksize2) + self.offset
        idx = unpack_4bit(self.packed, self.shape.numel())
        return absmax_dequantize(idx, absmax, nf4_code_book(), self.blocksize).view(self.shape)

    def nbytes(self) -> int:
        """Bytes stored (the code books are shared by every weight and not counted)."""
        extra = [self.absmax2] if self.absmax2 is not None else []
        return sum(t.numel() * t.element_size() for t in [self.packed, self.absmax, *extra])

    def bits_per_weight(self) -> float:
        return 8 * self.nbytes() / self.shape.numel()


def nf4_quantize(W: torch.Tensor, blocksize: int = 64, double_quant: bool = True, blocksize2: int = 256,
                 code2: torch.Tensor | None = None) -> NF4Weight:
    """W -> NF4Weight: blockwise absmax onto the NF4 code book, then (optionally) the absmax in 8 bits."""
    idx, absmax = absmax_quantize(W, nf4_code_book(), blocksize)
    q = NF4Weight(pack_4bit(idx), absmax, W.shape, blocksize, blocksize2=blocksize2)
    if double_quant:
        code2 = linear_code(8) if code2 is None else code2.float()
        q.offset = absmax.mean().item()
        # c_b - mean(c) -> 8-bit indices j and one float32 c2_B per 256 constants
        q.absmax, q.absmax2 = absmax_quantize(absmax - q.offset, code2, blocksize2)
        q.code2 = code2
    return q


def reconstruction_error(W: torch.Tensor, blocksize: int = 64, bits: int = 4, code: str = "nf4") -> float:
    """Mean |W - deq(Q(W))| for a `bits`-bit blockwise absmax quantization with `blocksize` weights per
    constant; `code` 'nf4' (4 bits only) or 'linear' (evenly spaced values: int-like)."""
    if code == "nf4":
        if bits != 4:
            raise ValueError(f"code='nf4' has 4 bits, got bits={bits}; use code='linear' for other widths")
        book = nf4_code_book()
    elif code == "linear":
        book = linear_code(bits)
    else:
        raise ValueError(f"code: 'nf4' or 'linear', got {code!r}")
    idx, absmax = absmax_quantize(W, book, blocksize)
    return (absmax_dequantize(idx, absmax, book, blocksize).view(W.shape) - W).abs().mean().item()
