"""Prefix tuning: Optimizing Continuous Prompts for Generation (Li & Liang, 2021, arXiv:2101.00190).

Every matched attention layer gets p learned key/value vectors that every query can attend to::

    head = Attn(Q, [K_pre; K], [V_pre; V]) = softmax(Q [K_pre; K]ᵀ / √d) [V_pre; V]      K_pre, V_pre ∈ R^{p×d}

Res-Tuning (Jiang et al., 2023, arXiv:2310.19859) writes the same head as a gated sum of the frozen
attention and an attention over the prefix alone (see `decompose_prefix_attention`)::

    Attn(Q, [K_pre; K], [V_pre; V]) = (1 − λ)·Attn(Q, K, V) + λ·Attn(Q, K_pre, V_pre)
    λ = Σ_j exp(q·k_pre_j/√d) / (Σ_j exp(q·k_j/√d) + Σ_j exp(q·k_pre_j/√d))          (one λ per query row)

How it attaches (the design): transformers' attention modules compute Q, K, V (after rotary, after the KV
cache update) and hand them to an *attention function* chosen by `config._attn_implementation`. The
tuner wraps each matched attention module and gives it a view of its config whose implementation is a
registered function (`transformers.AttentionInterface`) that prepends this layer's active K_pre / V_pre
and one visible mask column per prefix, then calls the model's real implementation (sdpa or eager).
So the equation above holds exactly on the real HF classes; prefixes are position-free (no rotary, no
cache entry), which also makes cached generation work. Supported: attention modules of transformers
models that dispatch through `ALL_ATTENTION_FUNCTIONS` — LLaMA, GPT-2, BERT, ViT here, and likewise
Mistral, Qwen2, Gemma, OPT, T5-style ... (flash-attention implementations are refused). Not supported:
diffusers' `Attention` (processor API; left for a processor-based variant), custom nn.Modules.

`prefix_projection=True` reparametrises as in the paper: P = MLP(E), E ∈ R^{p×kv_dim}, an MLP
kv_dim → `encoder_hidden_size` → 2·kv_dim (tanh) giving [K_pre, V_pre] (PEFT's form).

Differences from the paper: one MLP per layer instead of one shared MLP for all layers. Identity at init
is not promised: even with K_pre = V_pre = 0, λ > 0 pulls every head towards 0 (softmax mass moves to the
prefix), so only a gate could make the start exact; `disable_adapter()` gives exactly the base output.
Not mergeable: prefixes are extra keys/values, not a weight update.
"""
from __future__ import annotations

import contextvars
import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
from einops import rearrange

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import NonNegativeFloat, PositiveInt, Target
from ..core.modules import attention_parts, innermost_base_layer, model_attention, route_attention

ATTN_NAME = "swiftlite_prefix"
# (attention module, K_pre, V_pre) of the attention call in progress; K_pre, V_pre: (1, H_kv, p, d)
_ACTIVE_PREFIX: contextvars.ContextVar = contextvars.ContextVar("swiftlite_prefix", default=None)


@dataclass
class PrefixConfig(SwiftConfig):
    """swiftlite's own config (ms-swift has no prefix tuner); names follow PEFT's PrefixTuningConfig."""

    swift_type: str = field(default="PREFIX")
    target_modules: Target = None  # attention modules, e.g. r".*self_attn" (LLaMA), r".*attn" (GPT-2), r".*attention\.self" (BERT)
    num_virtual_tokens: PositiveInt = 10  # p: Li & Liang's prefix length for table-to-text
    prefix_projection: bool = False  # reparametrise K_pre, V_pre through an MLP (the paper's stabiliser)
    encoder_hidden_size: PositiveInt = 64  # hidden width of that MLP
    init_std: NonNegativeFloat = 0.02  # std of the normal init of the prefixes (or of E when projected)

    _invalid_examples: ClassVar[dict] = {"num_virtual_tokens": 0, "encoder_hidden_size": 0, "init_std": -1.0,
                                         "target_modules": None}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the attention modules, e.g. r'.*self_attn' for LLaMA or r'.*attention\\.self' for BERT")
        self._require(isinstance(self.num_virtual_tokens, int) and self.num_virtual_tokens > 0, "num_virtual_tokens",
                      f"must be a positive int, got {self.num_virtual_tokens!r}")
        self._require(isinstance(self.encoder_hidden_size, int) and self.encoder_hidden_size > 0, "encoder_hidden_size",
                      f"must be a positive int, got {self.encoder_hidden_size!r}")
        self._require(self.init_std >= 0, "init_std", f"must be >= 0, got {self.init_std!r}")


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Dense softmax attention, (..., Tq, d) x (..., Tk, d) -> (..., Tq, d); `bias` is added to the logits."""
    logits = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    return torch.softmax(logits if bias is None else logits + bias, dim=-1) @ v


def decompose_prefix_attention(q, k, v, k_pre, v_pre):
    """Res-Tuning's split: returns (Attn(Q,K,V), Attn(Q,K_pre,V_pre), λ) with λ of shape (..., Tq, 1)."""
    scale = q.shape[-1] ** -0.5
    lse_kv = torch.logsumexp(q @ k.transpose(-1, -2) * scale, dim=-1, keepdim=True)  # log Σ exp(q·k)
    lse_pre = torch.logsumexp(q @ k_pre.transpose(-1, -2) * scale, dim=-1, keepdim=True)  # log Σ exp(q·k_pre)
    # λ = Σexp(QK_preᵀ) / (Σexp(QKᵀ) + Σexp(QK_preᵀ))
    lam = torch.sigmoid(lse_pre - lse_kv)
    return attention(q, k, v), attention(q, k_pre, v_pre), lam


def unbind_prefix(prefix_layer: nn.Module, x: torch.Tensor, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """Res-Tuning's reading of a prefix-tuned attention module (a `PrefixLayer` of prefix.py) on input x:

    {"frozen": Attn(Q, K, V), "prefix": Attn(Q, K_pre, V_pre), "lam": λ(q), "output": the module's output rebuilt as
    concat_h((1 − λ)·frozen + λ·prefix) · W_o (+ b_o)}; heads (B, h, T, d_h), λ (B, h, T, 1). No attention mask
    (use it on unpadded inputs, e.g. images). Tutorial 03 checks "output" against the real module's output.
    """
    parts = attention_parts(innermost_base_layer(prefix_layer))
    e = parts["head_dim"]
    q, k, v = (rearrange(parts[n](x), "b t (n e) -> b n t e", e=e) for n in "qkv")  # (B, h, T, d_h)
    k_pre, v_pre = (rearrange(t, "p (n e) -> 1 n p e", e=e) for t in prefix_layer.prefixes(adapter_name))
    frozen, prefix, lam = decompose_prefix_attention(q, k, v, k_pre, v_pre)
    # (1 − λ)·Attn(Q, K, V) + λ·Attn(Q, K_pre, V_pre), heads concatenated, then W_o
    mixed = rearrange((1 - lam) * frozen + lam * prefix, "b n t e -> b t (n e)")
    output = parts["o"](mixed) if parts["o"] is not None else mixed
    return {"frozen": frozen, "prefix": prefix, "lam": lam, "output": output}


def _prefix_attention(module: nn.Module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: prepend K_pre / V_pre, then run the model's own implementation."""
    original = model_attention(module, "PrefixConfig")
    active = _ACTIVE_PREFIX.get()
    if active is None or active[0] is not module:
        return original(module, query, key, value, attention_mask, **kwargs)
    _, k_pre, v_pre = active
    b, p = key.shape[0], k_pre.shape[2]
    # [K_pre; K], [V_pre; V]: (B, H_kv, p + Tk, d)
    key = torch.cat((k_pre.expand(b, -1, -1, -1).to(key.dtype), key), dim=2)
    value = torch.cat((v_pre.expand(b, -1, -1, -1).to(value.dtype), value), dim=2)
    t_q, t_k = query.shape[2], key.shape[2] - p
    if attention_mask is None and kwargs.get("is_causal", getattr(module, "is_causal", False)) and t_q > 1:
        # the causal mask sdpa would build (with the cache offset), now explicit so prefix columns can join it
        attention_mask = torch.ones(t_q, t_k, dtype=torch.bool, device=query.device).tril(t_k - t_q)[None, None]
    if attention_mask is not None:
        visible = True if attention_mask.dtype == torch.bool else 0.0  # a prefix key is always visible
        cols = torch.full((*attention_mask.shape[:-1], p), visible, dtype=attention_mask.dtype, device=attention_mask.device)
        attention_mask = torch.cat((cols, attention_mask[..., :t_k]), dim=-1)  # (B, 1, Tq, p + Tk)
        kwargs["is_causal"] = False
    return original(module, query, key, value, attention_mask, **kwargs)


class PrefixLayer(TunerLayer):
    adapter_attrs = ("prefix_key", "prefix_value", "prefix_mlp")

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.prefix_key = nn.ParameterDict()  # K_pre (p, kv_dim), or E when projected
        self.prefix_value = nn.ParameterDict()  # V_pre (p, kv_dim)
        self.prefix_mlp = nn.ModuleDict()  # E -> [K_pre, V_pre] when prefix_projection
        config = base_layer.config
        heads_kv = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(base_layer, "head_dim", None) or getattr(base_layer, "attention_head_size", None) \
            or config.hidden_size // config.num_attention_heads
        self.kv_dim, self.prefix_head_dim = heads_kv * head_dim, head_dim
        route_attention(base_layer, ATTN_NAME, _prefix_attention)

    def add_adapter(self, adapter_name: str, config: PrefixConfig) -> None:
        device, dtype = self._base_device_dtype()
        shape = (config.num_virtual_tokens, self.kv_dim)
        self.prefix_key[adapter_name] = nn.Parameter(torch.randn(shape, device=device, dtype=dtype) * config.init_std)
        if config.prefix_projection:
            self.prefix_mlp[adapter_name] = nn.Sequential(
                nn.Linear(self.kv_dim, config.encoder_hidden_size), nn.Tanh(),
                nn.Linear(config.encoder_hidden_size, 2 * self.kv_dim)).to(device, dtype)
        else:
            self.prefix_value[adapter_name] = nn.Parameter(torch.randn(shape, device=device, dtype=dtype) * config.init_std)

    def unwrap(self) -> nn.Module:
        self.base_layer.config = self.base_layer.config.base
        return self.base_layer


    def prefixes(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(K_pre, V_pre) of one adapter, each (p, kv_dim)."""
        if name in self.prefix_mlp:
            # [K_pre, V_pre] = MLP(E)
            return self.prefix_mlp[name](self.prefix_key[name]).chunk(2, dim=-1)
        return self.prefix_key[name], self.prefix_value[name]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        active = self.active_adapters
        if not active:
            return self.base_layer(*args, **kwargs)
        pairs = [self.prefixes(name) for name in active]
        k_pre = torch.cat([k for k, _ in pairs])  # (p_total, kv_dim)
        v_pre = torch.cat([v for _, v in pairs])
        d = self.prefix_head_dim
        # split the heads: (p, H_kv·d) -> (1, H_kv, p, d)
        k_pre = rearrange(k_pre, "p (h d) -> 1 h p d", d=d)
        v_pre = rearrange(v_pre, "p (h d) -> 1 h p d", d=d)
        token = _ACTIVE_PREFIX.set((self.base_layer, k_pre, v_pre))
        try:
            return self.base_layer(*args, **kwargs)
        finally:
            _ACTIVE_PREFIX.reset(token)


# Attention classes known to hand Q, K, V to `ALL_ATTENTION_FUNCTIONS` (checked against the installed
# transformers by tests/test_prefix.py, so a release that changes one of them fails loudly there).
KNOWN_ATTENTION_CLASSES = frozenset({
    "LlamaAttention", "MistralAttention", "Qwen2Attention", "Qwen3Attention", "GemmaAttention", "Gemma2Attention",
    "PhiAttention", "Phi3Attention", "OPTAttention", "GPT2Attention", "BertSelfAttention", "RobertaSelfAttention",
    "ViTAttention", "ViTSelfAttention", "DeiTSelfAttention", "CLIPAttention", "SiglipAttention", "T5Attention",
})


def _dispatches_attention(module: nn.Module) -> bool:
    """Does this module compute attention through transformers' attention-function registry?

    A named allow-list first; otherwise the module's `forward` (unwrapped from any decorator that
    transformers puts around it) must look up `ALL_ATTENTION_FUNCTIONS`, a module-level name.
    """
    source = sys.modules.get(type(module).__module__)
    if not (hasattr(source, "ALL_ATTENTION_FUNCTIONS") and hasattr(getattr(module, "config", None), "_attn_implementation")):
        return False
    if type(module).__name__ in KNOWN_ATTENTION_CLASSES:
        return True
    forward = inspect.unwrap(type(module).forward)
    return "ALL_ATTENTION_FUNCTIONS" in getattr(getattr(forward, "__code__", None), "co_names", ())


@register_tuner
class PrefixTuner(Tuner):
    """Wraps each matched attention module; its prefix keys and values join every query's context."""

    config_class = PrefixConfig
    layer_class = PrefixLayer
    identity_at_init = False
    not_mergeable_reason = "prefixes are extra keys and values every query attends to, not a weight update"

    @classmethod
    def match(cls, model: nn.Module, config: PrefixConfig) -> list[str]:
        names = super().match(model, config)  # target_modules, any module type; then: attention modules only
        wrong = [f"{n} ({type(model.get_submodule(n)).__name__})" for n in names
                 if not isinstance(model.get_submodule(n), PrefixLayer) and not _dispatches_attention(model.get_submodule(n))]
        if wrong:
            raise ValueError(f"PrefixConfig.target_modules matched modules that do not compute attention through "
                             f"transformers' attention functions: {', '.join(wrong[:6])}. Point it at the attention "
                             f"modules themselves, e.g. r'.*self_attn' (LLaMA), r'.*attn' (GPT-2), "
                             f"r'.*attention\\.self' (BERT), r'.*layers\\.\\d+\\.attention' (ViT).")
        return names
