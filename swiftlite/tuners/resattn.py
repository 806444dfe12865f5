"""Res-Attn: a low-rank multi-head attention as a Res-Tuner (arXiv:2312.16916, inside the Res-Tuning
framework of Jiang et al., NeurIPS 2023, arXiv:2310.19859).

A frozen operation OP (an attention module, an MLP, a whole block) gets a parallel attention branch::

    x' = OP(x) + ResAttn(x)
    ResAttn(x) = concat_h( softmax(Q_h K_hᵀ / √(r/h)) V_h ) · A_o
    Q = x·A_q,  K = x·A_k,  V = x·A_v          A_q, A_k, A_v ∈ R^{d×r},  A_o ∈ R^{r×d'}

x: (B, T, d) tokens ((B, C, H, W) feature maps are read as (B, HW, C) tokens); the branch attends with
`num_heads` heads of width r/h, all inside the rank-r space, so its cost is O(T²·r + T·d·r) and its
parameters 3·d·r + r·d'. Init: A_q, A_k, A_v as nn.Linear (Kaiming-uniform), A_o = 0, so the model is
exactly unchanged at injection and every matrix gets a gradient from the first step on (dL/dA_o ≠ 0).

Masks: beside an attention module the branch reuses the mask OP receives (`attention_mask`, a 4-D
(B, 1, Tq, Tk) bool or additive mask as transformers passes it), and is causal when OP is (`causal=None`
detects `is_causal` on OP or its children), so padding and future tokens stay invisible.

    from swiftlite import Swift, ResAttnConfig
    model = Swift.prepare_model(vit, ResAttnConfig(target_modules=r".*layers\\.\\d+\\.attention", r=16, num_heads=4))

Checkpoint keys: `<op>.resattn_<adapter>.{q,k,v,o}.weight`. The injection (wrap OP, add the branch to
its output) is `parallel.py`'s, shared with U-Tuning; `UTuningConfig(tuner="res_attn")` uses this module.

Differences from the paper (which gives the method only in outline, see ../shared/PAPERS.md): our exact
choices are no biases in A_*, softmax scale 1/√(r/h), no normalisation or dropout inside the branch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..core import SwiftConfig, Tuner, register_tuner
from ..core.config import Index, PositiveInt, Target
from .parallel import check_branches, inject_branches


class ResAttn(nn.Module):
    """The branch `concat_h(softmax(Q_h K_hᵀ/√(r/h)) V_h)·A_o` with Q, K, V = x·A_{q,k,v} (rank r)."""

    def __init__(self, dim: int, out_dim: int, r: int, num_heads: int, causal: bool = False) -> None:
        super().__init__()
        if r % num_heads:
            raise ValueError(f"ResAttn: r={r} must be divisible by num_heads={num_heads} (each head is r/h wide)")
        self.num_heads, self.causal = num_heads, causal
        self.q = nn.Linear(dim, r, bias=False)  # A_q
        self.k = nn.Linear(dim, r, bias=False)  # A_k
        self.v = nn.Linear(dim, r, bias=False)  # A_v
        self.o = nn.Linear(r, out_dim, bias=False)  # A_o
        nn.init.zeros_(self.o.weight)  # A_o = 0: ResAttn(x) = 0 at init

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        h = x.to(self.q.weight.dtype)  # (B, T, d)
        q, k, v = (rearrange(proj(h), "b t (n e) -> b n t e", n=self.num_heads) for proj in (self.q, self.k, self.v))
        mask = _as_additive(attention_mask, h.dtype, q.shape[2], k.shape[2])
        if self.causal:
            t_q, t_k = q.shape[2], k.shape[2]
            future = torch.ones(t_q, t_k, dtype=torch.bool, device=h.device).triu(t_k - t_q + 1)
            causal = torch.zeros(t_q, t_k, dtype=h.dtype, device=h.device).masked_fill(future, torch.finfo(h.dtype).min)
            mask = causal if mask is None else mask + causal
        # softmax(Q_h K_hᵀ / √(r/h)) V_h, per head: (B, h, T, r/h)
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        # concat_h(...) · A_o: (B, T, r) -> (B, T, d')
        return self.o(rearrange(heads, "b n t e -> b t (n e)")).to(x.dtype)

    def residual(self, x: torch.Tensor, op: nn.Module, mask: Any) -> torch.Tensor:
        """T(x) beside `op`, seeing the attention mask `op` received (parallel.ParallelLayer calls it)."""
        return self(x.to(self.q.weight.dtype), mask)


def res_attn_branch(kind: str, dim: int, out_dim: int, config: Any, op: nn.Module, where: str) -> ResAttn:
    """A zero-initialised ResAttn beside `op`, causal when `config.causal` says so (None: when `op` is)."""
    causal = config.causal if config.causal is not None else any(
        getattr(m, "is_causal", False) is True for m in op.modules())
    return ResAttn(dim, out_dim, config.r, config.num_heads, causal=causal)


def _as_additive(mask: torch.Tensor | None, dtype: torch.dtype, t_q: int, t_k: int) -> torch.Tensor | None:
    """A transformers 4-D mask (bool: True = visible, or additive) as an additive float mask; None when
    `mask` is not one (e.g. a 2-D padding mask, which transformers turns into 4-D before attention)."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4 or mask.shape[-1] != t_k or mask.shape[-2] not in (1, t_q):
        return None
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    return mask.to(dtype).clamp(min=torch.finfo(dtype).min)  # finite: a fully masked row stays finite


@dataclass
class ResAttnConfig(SwiftConfig):
    """swiftlite's own config (ms-swift has no Res-Attn)."""

    swift_type: str = field(default="RESATTN")
    target_modules: Target = None  # the frozen operations OP the branch sits beside (MHA, FFN or blocks)
    r: PositiveInt = 16  # rank: the width of the branch's Q, K, V
    num_heads: PositiveInt = 4  # heads inside the rank-r space (r % num_heads == 0)
    dim: Union[PositiveInt, None] = None  # width d of OP's input (None: read from OP's weights)
    out_dim: Union[PositiveInt, None] = None  # width d' of OP's output (None: read from OP's weights, else dim)
    input_pos: Union[Index, str, None] = None  # which argument of OP is x (None: its first parameter)
    hidden_pos: Union[Index, str, None] = None  # which element of a tuple/dict output gets + ResAttn(x)
    causal: Union[bool, None] = None  # causal branch (None: when OP or one of its children is causal)

    _invalid_examples: ClassVar[dict] = {"r": 0, "num_heads": 0, "target_modules": None, "dim": -1}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the frozen operations to put Res-Attn beside, e.g. r'.*layers\\.\\d+\\.attention'")
        self._require(self.r % self.num_heads == 0, "num_heads",
                      f"must divide r (each head is r/num_heads wide), got r={self.r}, num_heads={self.num_heads}")


@register_tuner
class ResAttnTuner(Tuner):
    """Wraps each matched operation in a `ParallelLayer` (parallel.py) with a `ResAttn` branch."""

    config_class = ResAttnConfig
    identity_at_init = True  # A_o = 0
    mergeable = False
    not_mergeable_reason = "Res-Attn is a separate attention branch (softmax of the input); it has no weight to fold into"

    @classmethod
    def check(cls, model: nn.Module, config: ResAttnConfig, names: list[str]) -> None:
        check_branches(model, config, dict.fromkeys(names, "res_attn"), res_attn_branch)

    @classmethod
    def inject(cls, model: nn.Module, config: ResAttnConfig, adapter_name: str) -> None:
        kinds = dict.fromkeys(cls.match(model, config), "res_attn")
        inject_branches(model, config, kinds, res_attn_branch, adapter_name, prefix="resattn_")
