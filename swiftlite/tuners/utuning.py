"""U-Tuning / Res-Tuning (the unbinding view): a frozen operation plus a parallel Res-Tuner.

Res-Tuning (Jiang et al., NeurIPS 2023, arXiv:2310.19859) and U-Tuning (arXiv:2303.00690) write every
parameter-efficient tuner as a branch *beside* a frozen operation instead of inside it::

    x' = OP(x) + T(x)          OP ∈ {MHA, FFN, whole block} (frozen),  T a Res-Tuner (trained)

x is OP's input (B, T, d) (a (B, C, H, W) feature map is read as (B, HW, C) tokens for the token
tuners), OP(x) its output (B, T, d'). The Res-Tuners T, one per operation (`tuner`):

    "res_adapter"  T(x) = W_2 · GELU(W_1 · x + b_1) + b_2                        W_1: d→m, W_2: m→d (d' = d)
    "res_lora"     T(x) = x · A · B                                              A: d→r, B: r→d'
    "res_prefix"   T(x) = Attn(x·W_q, K_pre, V_pre) · W_o                        K_pre, V_pre ∈ R^{h×p×d_h}
    "res_prompt"   T(x) = g ⊙ Attn(x·W_q, P·W_k, P·W_v) · W_o                    P ∈ R^{p×d}, g ∈ R^{d'}
    "res_attn"     T(x) = concat_h softmax(Q_h K_hᵀ/√(r/h)) V_h · A_o,  Q,K,V = x·A_{q,k,v}   (resattn.py)

W_q, W_k, W_v, W_o are OP's own frozen projections (Res-Prefix / Res-Prompt attach to an attention
module: `q_proj`/`query`, `o_proj`/`out_proj`, ...; W_o is applied without its bias, and is skipped
when OP has none, e.g. BERT's `attention.self`). Why prefix tuning *is* such a branch: with one query
row q, Res-Tuning's identity (tested in tests/test_unbinding.py, shown in tutorial 03)::

    Attn(q, [K_pre; K], [V_pre; V]) = (1 − λ(q))·Attn(q, K, V) + λ(q)·Attn(q, K_pre, V_pre)
    λ(q) = Σ_j exp(q·k_pre_j/√d_h) / (Σ_j exp(q·k_j/√d_h) + Σ_j exp(q·k_pre_j/√d_h))

Res-Prefix unbinds it: drop the gate, keep the two attentions as OP and T.

Init (the model is exactly unchanged at injection): Res-Adapter W_2 = b_2 = 0 (ms-swift's Res-Adapter,
`restuning_components.ResAdapter`, with its last layer zeroed; W_1 Xavier); Res-LoRA B = 0 (A Kaiming);
Res-Prefix V_pre = 0 (K_pre ~ N(0, init_std²)); Res-Prompt g = 0 (P ~ N(0, init_std²); with g = 0 the
first step trains g only, then P, as LLaMA-Adapter's zero gate); Res-Attn A_o = 0.

Choosing where: `target_modules` selects the operations (regex or names), `tuner` is one Res-Tuner for
all of them or a dict {operation pattern: Res-Tuner} (pattern: a regex matching the whole name, or a
name / dotted suffix); without `target_modules`, the dict's patterns select the operations::

    from swiftlite import Swift, UTuningConfig
    config = UTuningConfig(tuner={r".*layers\\.\\d+\\.attention": "res_prefix", r".*layers\\.\\d+\\.mlp": "res_adapter"},
                           num_tokens=8, adapter_length=16)
    model = Swift.prepare_model(vit, config)          # vit: a transformers ViTForImageClassification

Checkpoint keys: `<op>.utuning_<adapter>.<branch weights>` (e.g. `...mlp.utuning_default.ln2.weight`).

Differences from the papers: one Res-Tuner kind per operation per adapter (add a second adapter to stack
two on one operation); Res-Prefix / Res-Prompt queries are x·W_q without rotary position embeddings
(LLaMA), as the prefixes are position-free; Res-Prompt's zero gate g is ours (for the exact identity at
init). ms-swift has no U-Tuning (its ResTuning is only the Bypass, restuning.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..core import SwiftConfig, Tuner, register_tuner
from ..core.config import Index, NonNegativeFloat, PositiveInt, Target
from ..core.layer import canonical_name
from ..core.modules import PROJECTIONS, attention_parts, innermost_base_layer
from ..core.targeting import match_modules, name_matches
from .parallel import check_branches, inject_branches
from .resattn import res_attn_branch
from .restuning_components import ResAdapter

ResTunerKind = Literal["res_adapter", "res_lora", "res_prefix", "res_prompt", "res_attn"]
RES_TUNERS = ("res_adapter", "res_lora", "res_prefix", "res_prompt", "res_attn")


@dataclass
class UTuningConfig(SwiftConfig):
    """swiftlite's own config (ms-swift has no U-Tuning)."""

    swift_type: str = field(default="UTUNING")
    target_modules: Target = None  # the frozen operations OP (MHA, FFN or blocks); None: the keys of a dict `tuner`
    tuner: Union[ResTunerKind, dict[str, ResTunerKind]] = "res_adapter"  # T for every OP, or {OP pattern: T}
    dim: Union[PositiveInt, None] = None  # width d of OP's input (None: read from OP's weights)
    out_dim: Union[PositiveInt, None] = None  # width d' of OP's output (None: read from OP's weights, else dim)
    input_pos: Union[Index, str, None] = None  # which argument of OP is x (None: its first parameter)
    hidden_pos: Union[Index, str, None] = None  # which element of a tuple/dict output gets + T(x) (None: the first)
    adapter_length: PositiveInt = 32  # res_adapter: bottleneck m (ms-swift's Res-Adapter default)
    r: PositiveInt = 8  # res_lora: rank; res_attn: width of its Q, K, V
    num_heads: PositiveInt = 2  # res_attn: heads (r % num_heads == 0)
    num_tokens: PositiveInt = 10  # res_prefix / res_prompt: p, the number of prefix / prompt tokens
    init_std: NonNegativeFloat = 0.02  # res_prefix K_pre / res_prompt P ~ N(0, init_std²)
    causal: Union[bool, None] = None  # res_attn: causal branch (None: when OP or one of its children is causal)

    _invalid_examples: ClassVar[dict] = {"tuner": "res_nothing", "adapter_length": 0, "num_heads": 0, "dim": -1,
                                         "num_tokens": 0}

    def validate(self) -> None:
        self._require(self.target_modules is not None or isinstance(self.tuner, dict), "target_modules",
                      "is required with a single tuner: the frozen operations, e.g. r'.*layers\\.\\d+\\.mlp' (or give "
                      "tuner as a dict {operation pattern: tuner})")
        self._require(not isinstance(self.tuner, dict) or len(self.tuner) > 0, "tuner",
                      "is an empty dict; map at least one operation pattern to one of " + str(list(RES_TUNERS)))
        if isinstance(self.tuner, dict):
            for pattern in self.tuner:
                try:
                    re.compile(pattern)
                except re.error as err:
                    self._require(False, "tuner", f"key {pattern!r} is not a valid regex ({err})")
        uses_attn = "res_attn" in (self.tuner.values() if isinstance(self.tuner, dict) else [self.tuner])
        self._require(not uses_attn or self.r % self.num_heads == 0, "num_heads",
                      f"must divide r for res_attn (each head is r/num_heads wide), got r={self.r}, "
                      f"num_heads={self.num_heads}")

    def tuner_for(self, name: str) -> str | None:
        """The Res-Tuner of operation `name`: `tuner`, or the first dict pattern matching it (None: none)."""
        if isinstance(self.tuner, str):
            return self.tuner
        return next((kind for pattern, kind in self.tuner.items() if pattern_matches(pattern, name)), None)


def pattern_matches(pattern: str, name: str) -> bool:
    """A dict `tuner` key selects `name` as a regex (whole name) or as a name / dotted suffix."""
    return re.fullmatch(pattern, name) is not None or name_matches(name, [pattern])


def _heads(t: torch.Tensor, head_dim: int) -> torch.Tensor:
    return rearrange(t, "... t (n e) -> ... n t e", e=head_dim)  # (B, T, n·e) -> (B, n, T, e)


def _out(heads: torch.Tensor, parts: dict[str, Any]) -> torch.Tensor:
    """concat_h(heads) · W_o (without W_o's bias; no W_o when the op has none)."""
    out = rearrange(heads, "b n t e -> b t (n e)")
    o = parts["o"]
    return out if o is None else F.linear(out.to(o.weight.dtype), o.weight)


class _ThroughAttention(nn.Module):
    """A Res-Tuner that reuses OP's frozen attention projections (Res-Prefix, Res-Prompt)."""

    def residual(self, x: torch.Tensor, op: nn.Module, mask: Any) -> torch.Tensor:
        parts = attention_parts(op)  # in the op's dtype
        return self(x.to(innermost_base_layer(parts["q"]).weight.dtype), parts)


class ResPrefix(_ThroughAttention):
    """T(x) = Attn(x·W_q, K_pre, V_pre) · W_o; V_pre = 0 at init."""

    def __init__(self, heads: int, head_dim: int, num_tokens: int, init_std: float) -> None:
        super().__init__()
        self.prefix_key = nn.Parameter(torch.randn(heads, num_tokens, head_dim) * init_std)  # K_pre (h, p, d_h)
        self.prefix_value = nn.Parameter(torch.zeros(heads, num_tokens, head_dim))  # V_pre = 0

    def forward(self, x: torch.Tensor, parts: dict[str, Any]) -> torch.Tensor:
        q = _heads(parts["q"](x), parts["head_dim"])  # (B, h, T, d_h)
        k_pre = self.prefix_key.to(q.dtype).expand(q.shape[0], -1, -1, -1)  # (B, h, p, d_h)
        v_pre = self.prefix_value.to(q.dtype).expand(q.shape[0], -1, -1, -1)
        # Attn(x·W_q, K_pre, V_pre) · W_o
        return _out(F.scaled_dot_product_attention(q, k_pre, v_pre), parts)


class ResPrompt(_ThroughAttention):
    """T(x) = g ⊙ Attn(x·W_q, P·W_k, P·W_v) · W_o; g = 0 at init."""

    def __init__(self, dim: int, out_dim: int, num_tokens: int, init_std: float) -> None:
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(num_tokens, dim) * init_std)  # P (p, d)
        self.gate = nn.Parameter(torch.zeros(out_dim))  # g = 0

    def forward(self, x: torch.Tensor, parts: dict[str, Any]) -> torch.Tensor:
        e = parts["head_dim"]
        q = _heads(parts["q"](x), e)  # (B, h, T, d_h)
        prompt = self.prompt.to(x.dtype)
        k, v = _heads(parts["k"](prompt), e), _heads(parts["v"](prompt), e)  # (h_kv, p, d_h)
        k, v = (t.repeat_interleave(q.shape[1] // t.shape[0], dim=0).expand(q.shape[0], -1, -1, -1) for t in (k, v))
        # g ⊙ Attn(x·W_q, P·W_k, P·W_v) · W_o
        return self.gate * _out(F.scaled_dot_product_attention(q, k, v), parts)


class ResLoRA(nn.Module):
    """T(x) = x · A · B; B = 0 at init."""

    def __init__(self, dim: int, out_dim: int, r: int) -> None:
        super().__init__()
        self.lora_A = nn.Linear(dim, r, bias=False)  # A: d -> r (Kaiming-uniform)
        self.lora_B = nn.Linear(r, out_dim, bias=False)  # B: r -> d'
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # T(x) = x · A · B
        return self.lora_B(self.lora_A(x))

    def residual(self, x: torch.Tensor, op: nn.Module, mask: Any) -> torch.Tensor:
        return self(x.to(self.lora_A.weight.dtype))


class ParallelResAdapter(ResAdapter):
    """Res-Adapter as a branch: T(x) = W_2 · GELU(W_1 · x + b_1) + b_2 (ms-swift's Res-Adapter without its h +)."""

    def residual(self, x: torch.Tensor, op: nn.Module, mask: Any) -> torch.Tensor:
        return self.branch(x.to(self.ln1.weight.dtype))


def make_branch(kind: str, dim: int, out_dim: int, config: Any, op: nn.Module, where: str) -> nn.Module:
    """A zero-initialised Res-Tuner `kind` beside `op` (dim -> out_dim); ValueError when it cannot attach."""
    if kind == "res_adapter":
        if dim != out_dim:
            raise ValueError(f"{where}: res_adapter maps d -> d, but the operation maps {dim} -> {out_dim} features; "
                             f"use res_lora or res_attn there, or another operation")
        return ParallelResAdapter(dim, config.adapter_length, zero_last=True, adapter_weight=None)  # W_2 = b_2 = 0
    if kind == "res_lora":
        return ResLoRA(dim, out_dim, config.r)
    if kind == "res_attn":
        return res_attn_branch(kind, dim, out_dim, config, op, where)
    parts = attention_parts(op)
    if parts is None:
        raise ValueError(f"{where}: {kind} reuses the operation's frozen attention projections, and "
                         f"{type(op).__name__} has none of {list(PROJECTIONS['q'])}; point it at an attention module "
                         f"(e.g. r'.*self_attn', r'.*attention\\.self', r'.*layers\\.\\d+\\.attention')")
    if kind == "res_prefix":
        return ResPrefix(parts["heads"], parts["head_dim"], config.num_tokens, config.init_std)
    return ResPrompt(dim, out_dim, config.num_tokens, config.init_std)


@register_tuner
class UTuningTuner(Tuner):
    """Wraps each selected operation in a `ParallelLayer` (parallel.py) holding the chosen Res-Tuner."""

    config_class = UTuningConfig
    identity_at_init = True  # every Res-Tuner starts at T(x) = 0
    mergeable = False
    not_mergeable_reason = "a Res-Tuner is a separate branch beside the operation (non-linear, or attending over its own keys)"

    @classmethod
    def match(cls, model: nn.Module, config: UTuningConfig) -> list[str]:
        target = config.target_modules
        if target is None:  # the dict's patterns select the operations
            target = "|".join(f"(?:{p})" for p in config.tuner) if len(config.tuner) else None
            names = [n for n in match_modules(model, r".+", config_name="UTuningConfig")
                     if config.tuner_for(canonical_name(model, n)) is not None]
            if not names:
                match_modules(model, target, field_name="tuner", config_name="UTuningConfig")  # raises, with hints
            return names
        names = match_modules(model, target, config_name="UTuningConfig")
        missing = [n for n in names if config.tuner_for(canonical_name(model, n)) is None]
        if missing:
            raise ValueError(f"UTuningConfig.tuner: no pattern of {list(config.tuner)} matches the operation "
                             f"{missing[0]!r} (selected by target_modules); add a key for it")
        return names

    @classmethod
    def check(cls, model: nn.Module, config: UTuningConfig, names: list[str]) -> None:
        check_branches(model, config, {n: config.tuner_for(canonical_name(model, n)) for n in names}, make_branch)

    @classmethod
    def inject(cls, model: nn.Module, config: UTuningConfig, adapter_name: str) -> None:
        kinds = {n: config.tuner_for(canonical_name(model, n)) for n in cls.match(model, config)}
        inject_branches(model, config, kinds, make_branch, adapter_name, prefix="utuning_")
