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
from typing import Any, Callable, ClassVar, Literal, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Index, NonNegativeFloat, PositiveInt, Target
from ..core.layer import canonical_name
from ..core.modules import apply_to_hidden, innermost_base_layer
from ..core.targeting import match_modules, name_matches, replace_module
from ..core.tuner import feature_width, forward_arguments, said_by
from .resattn import ResAttn
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


# ---- the frozen attention projections Res-Prefix / Res-Prompt reuse ------------------------------------
PROJECTIONS = {  # a named allow-list: transformers (LLaMA, ViT, BERT, OPT, ...) and diffusers attention
    "q": ("q_proj", "query", "to_q", "self.query"),
    "k": ("k_proj", "key", "to_k", "self.key"),
    "v": ("v_proj", "value", "to_v", "self.value"),
    "o": ("o_proj", "out_proj", "to_out.0", "output.dense"),
}


def attention_parts(op: nn.Module) -> dict[str, Any] | None:
    """{q, k, v, o (or None), heads, head_dim} of an attention module, or None when it is not one."""
    parts: dict[str, Any] = {}
    for role, paths in PROJECTIONS.items():
        for path in paths:
            try:
                parts[role] = op.get_submodule(path)
                break
            except AttributeError:
                continue
    if not all(role in parts for role in "qkv"):
        return None
    parts.setdefault("o", None)
    inner = getattr(op, "self", op)
    config = getattr(op, "config", None)
    heads = next((getattr(m, a) for m in (op, inner) for a in ("num_attention_heads", "num_heads", "heads")
                  if isinstance(getattr(m, a, None), int)), getattr(config, "num_attention_heads", None))
    if not isinstance(heads, int):
        return None
    parts["heads"], parts["head_dim"] = heads, innermost_base_layer(parts["q"]).weight.shape[0] // heads
    return parts


def _heads(t: torch.Tensor, head_dim: int) -> torch.Tensor:
    return rearrange(t, "... t (n e) -> ... n t e", e=head_dim)  # (B, T, n·e) -> (B, n, T, e)


def _out(heads: torch.Tensor, parts: dict[str, Any]) -> torch.Tensor:
    """concat_h(heads) · W_o (without W_o's bias; no W_o when the op has none)."""
    out = rearrange(heads, "b n t e -> b t (n e)")
    o = parts["o"]
    return out if o is None else F.linear(out.to(o.weight.dtype), o.weight)


class ResPrefix(nn.Module):
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


class ResPrompt(nn.Module):
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
        return self.lora_B(self.lora_A(x))


def make_branch(kind: str, dim: int, out_dim: int, config: Any, op: nn.Module, where: str) -> nn.Module:
    """A zero-initialised Res-Tuner `kind` beside `op` (dim -> out_dim); ValueError when it cannot attach."""
    if kind == "res_adapter":
        if dim != out_dim:
            raise ValueError(f"{where}: res_adapter maps d -> d, but the operation maps {dim} -> {out_dim} features; "
                             f"use res_lora or res_attn there, or another operation")
        return ResAdapter(dim, config.adapter_length, zero_last=True, adapter_weight=None)  # W_2 = b_2 = 0
    if kind == "res_lora":
        return ResLoRA(dim, out_dim, config.r)
    if kind == "res_attn":
        causal = config.causal if config.causal is not None else any(
            getattr(m, "is_causal", False) is True for m in op.modules())
        return ResAttn(dim, out_dim, config.r, config.num_heads, causal=causal)
    parts = attention_parts(op)
    if parts is None:
        raise ValueError(f"{where}: {kind} reuses the operation's frozen attention projections, and "
                         f"{type(op).__name__} has none of {list(PROJECTIONS['q'])}; point it at an attention module "
                         f"(e.g. r'.*self_attn', r'.*attention\\.self', r'.*layers\\.\\d+\\.attention')")
    if kind == "res_prefix":
        return ResPrefix(parts["heads"], parts["head_dim"], config.num_tokens, config.init_std)
    return ResPrompt(dim, out_dim, config.num_tokens, config.init_std)


def unbind_prefix(prefix_layer: nn.Module, x: torch.Tensor, adapter_name: str = "default") -> dict[str, torch.Tensor]:
    """Res-Tuning's reading of a prefix-tuned attention module (a `PrefixLayer` of prefix.py) on input x:

    {"frozen": Attn(Q, K, V), "prefix": Attn(Q, K_pre, V_pre), "lam": λ(q), "output": the module's output rebuilt as
    concat_h((1 − λ)·frozen + λ·prefix) · W_o (+ b_o)}; heads (B, h, T, d_h), λ (B, h, T, 1). No attention mask
    (use it on unpadded inputs, e.g. images). Tutorial 03 checks "output" against the real module's output.
    """
    from .prefix import decompose_prefix_attention

    op = innermost_base_layer(prefix_layer)
    parts = attention_parts(op)
    e = parts["head_dim"]
    q, k, v = (_heads(parts[n](x), e) for n in "qkv")  # (B, h, T, d_h)
    k_pre, v_pre = (rearrange(t, "p (n e) -> 1 n p e", e=e) for t in prefix_layer.prefixes(adapter_name))
    frozen, prefix, lam = decompose_prefix_attention(q, k, v, k_pre, v_pre)
    # (1 − λ)·Attn(Q, K, V) + λ·Attn(Q, K_pre, V_pre), heads concatenated, then W_o
    mixed = rearrange((1 - lam) * frozen + lam * prefix, "b n t e -> b t (n e)")
    output = parts["o"](mixed) if parts["o"] is not None else mixed
    return {"frozen": frozen, "prefix": prefix, "lam": lam, "output": output}


# ---- the layer: x' = OP(x) + Σ_a T_a(x) -----------------------------------------------------------------
class ParallelLayer(TunerLayer):
    """Wraps a frozen operation OP; each active adapter's Res-Tuner T_a adds T_a(x) to OP's output."""

    adapter_prefixes = ("utuning_", "resattn_")  # adapter <name> is the child `utuning_<name>` (or `resattn_<name>`)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.branch_info: dict[str, tuple[str, int | str | None, int | str | None]] = {}  # name -> (kind, in, out pos)
        self.parameter_names = forward_arguments(innermost_base_layer(base_layer))[0]

    def add_branch(self, adapter_name: str, prefix: str, kind: str, branch: nn.Module, input_pos: Any,
                   hidden_pos: Any) -> None:
        device, _ = self._base_device_dtype()
        self.add_adapter_module(prefix, adapter_name, branch.to(device))  # float32 branch, cast in forward
        self.branch_info[adapter_name] = (kind, input_pos, hidden_pos)

    def branch(self, adapter_name: str) -> nn.Module:
        return next(module for _, module in self.adapter_modules(adapter_name))

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.branch_info.pop(adapter_name, None)

    def argument(self, args: tuple, kwargs: dict, pos: int | str | None) -> Any:
        """OP's argument `pos` (int: positional index; str: parameter name; None: the first parameter)."""
        if isinstance(pos, int):
            if not -len(args) <= pos < len(args):
                raise ValueError(f"input_pos={pos}: {type(self.base_layer).__name__} was called with {len(args)} "
                                 f"positional argument(s) (keywords: {list(kwargs)}); give the parameter's name")
            return args[pos]
        name = pos if pos is not None else (self.parameter_names[0] if self.parameter_names else None)
        if name in kwargs:
            return kwargs[name]
        if name in self.parameter_names and self.parameter_names.index(name) < len(args):
            return args[self.parameter_names.index(name)]
        if pos is None and args:
            return args[0]
        return None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.base_layer(*args, **kwargs)
        active = self.active_adapters
        if not active:
            return out
        mask = self.argument(args, kwargs, "attention_mask") if "attention_mask" in self.parameter_names or \
            "attention_mask" in kwargs else None
        for name in active:
            kind, input_pos, hidden_pos = self.branch_info[name]
            x = self.argument(args, kwargs, input_pos)
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"input_pos={input_pos!r}: {type(self.base_layer).__name__} received no tensor "
                                 f"there; name the argument that holds the hidden states")
            t_x = self.run_branch(name, kind, x, mask)
            out = apply_to_hidden(out, hidden_pos, lambda h: self._add(h, t_x))
        return out

    def run_branch(self, name: str, kind: str, x: torch.Tensor, mask: Any) -> torch.Tensor:
        """T(x) in x's layout: (B, C, H, W) feature maps go through the token tuners as (B, HW, C)."""
        branch = self.branch(name)
        h = rearrange(x, "b c hh ww -> b (hh ww) c") if x.dim() == 4 else x
        if kind in ("res_prefix", "res_prompt"):  # through the op's own projections, in the op's dtype
            parts = attention_parts(innermost_base_layer(self.base_layer))
            t = branch(h.to(innermost_base_layer(parts["q"]).weight.dtype), parts)
        else:
            h = h.to(next(branch.parameters()).dtype)
            t = branch.branch(h) if kind == "res_adapter" else branch(h, mask) if kind == "res_attn" else branch(h)
        return rearrange(t, "b (hh ww) c -> b c hh ww", hh=x.shape[2]) if x.dim() == 4 else t

    def _add(self, h: torch.Tensor, t_x: torch.Tensor) -> torch.Tensor:
        if h.shape != t_x.shape:
            raise ValueError(f"U-Tuning: {type(self.base_layer).__name__} maps its input to shape {tuple(h.shape)}, "
                             f"but the Res-Tuner gives {tuple(t_x.shape)}; x' = OP(x) + T(x) needs the same shape "
                             f"(set out_dim, input_pos or hidden_pos, or pick an operation that keeps the layout)")
        # x' = OP(x) + T(x)
        return h + t_x.to(h.dtype)


def _base_modules(module: nn.Module, prefix: str):
    """named_modules() of the model without tuners: tuner layers are looked through to their base layer."""
    if isinstance(module, TunerLayer) and module.base_layer is not None:
        yield from _base_modules(module.base_layer, prefix)
        return
    yield prefix, module
    for name, child in module.named_children():
        yield from _base_modules(child, f"{prefix}.{name}" if prefix else name)


def channel_width(op: nn.Module, side: str) -> tuple[int, str] | None:
    """(channels, layer name) of a convolutional operation's input ("in": its first GroupNorm / Conv2d) or
    output ("out": its last Conv2d); None without convolutions. Its (B, C, H, W) maps meet the token
    tuners as (B, HW, C), so C is their width."""
    leaves = [(n, m) for n, m in _base_modules(op, "") if isinstance(m, (nn.Conv2d, nn.GroupNorm))]
    convs = [(n, m) for n, m in leaves if isinstance(m, nn.Conv2d)]
    if not convs:
        return None
    if side == "out":
        name, conv = convs[-1]
        return conv.out_channels, name
    name, first = leaves[0]
    return (first.in_channels if isinstance(first, nn.Conv2d) else first.num_channels), name


def widths(model: nn.Module, name: str, config: Any, config_name: str) -> tuple[int, int]:
    """(d, d') of operation `name`: the config's dim / out_dim, checked against what OP's weights say."""
    op = model.get_submodule(name)
    base = innermost_base_layer(op)
    found_in = feature_width(op, "in") or channel_width(op, "in")
    found_out = feature_width(op, "out") or channel_width(op, "out")
    if config.dim is not None and found_in is not None and found_in[0] != config.dim:
        raise ValueError(f"{config_name}.dim={config.dim}: the input of {name!r} ({type(base).__name__}) has "
                         f"{found_in[0]} features{said_by(found_in)}; set dim={found_in[0]} (or leave it None)")
    dim = config.dim if config.dim is not None else (found_in[0] if found_in else None)
    if dim is None:
        raise ValueError(f"{config_name}.dim: the input width of {name!r} ({type(base).__name__}) cannot be read "
                         f"from its weights (no layers with a feature width); set dim, e.g. its channel count")
    if config.out_dim is not None and found_out is not None and found_out[0] != config.out_dim:
        raise ValueError(f"{config_name}.out_dim={config.out_dim}: the output of {name!r} ({type(base).__name__}) "
                         f"has {found_out[0]} features{said_by(found_out)}; set out_dim={found_out[0]}")
    out_dim = config.out_dim or (found_out[0] if found_out else dim)
    return dim, out_dim


def check_widths(model: nn.Module, config: Any, names: list[str], config_name: str) -> None:
    for name in names:
        widths(model, name, config, config_name)


def inject_branches(model: nn.Module, names: list[str], config: Any, adapter_name: str, prefix: str,
                    kind_of: Callable[[str], str]) -> None:
    """Wrap each operation in a ParallelLayer (once) and add this adapter's Res-Tuner to it."""
    config_name = type(config).__name__
    # build every branch first, so an operation that cannot take its tuner changes nothing
    branches = {}
    for name in names:
        op = innermost_base_layer(model.get_submodule(name))
        dim, out_dim = widths(model, name, config, config_name)
        kind = kind_of(name)
        branches[name] = kind, make_branch(kind, dim, out_dim, config, op, f"{config_name}.tuner ({name!r})")
    # innermost operations first: wrapping a block before its attention would hide the attention's parent
    for name in sorted(names, key=lambda n: n.count("."), reverse=True):
        module = model.get_submodule(name)
        layer = module if isinstance(module, ParallelLayer) else ParallelLayer(module)
        kind, branch = branches[name]
        layer.add_branch(adapter_name, prefix, kind, branch, config.input_pos, config.hidden_pos)
        if layer is not module:
            replace_module(model, name, layer)


@register_tuner
class UTuningTuner(Tuner):
    """Wraps each selected operation in a `ParallelLayer` holding the chosen Res-Tuner."""

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
        for name in names:
            dim, out_dim = widths(model, name, config, "UTuningConfig")
            make_branch(config.tuner_for(canonical_name(model, name)), dim, out_dim, config,
                        innermost_base_layer(model.get_submodule(name)), f"UTuningConfig.tuner ({name!r})")

    @classmethod
    def inject(cls, model: nn.Module, config: UTuningConfig, adapter_name: str) -> None:
        inject_branches(model, cls.match(model, config), config, adapter_name, prefix="utuning_",
                        kind_of=lambda name: config.tuner_for(canonical_name(model, name)))
