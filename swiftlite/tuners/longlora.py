"""LongLoRA: Efficient Fine-tuning of Long-context Large Language Models (Chen et al., 2023, arXiv:2309.12307).

Two changes to LoRA make long-context fine-tuning cheap:

1. Shifted sparse attention (S²-Attn), in training only. The T tokens are split into groups of
   G = group_size_ratio · T and each token attends (causally) within its group only; in half of the
   heads the groups are shifted by G/2 tokens, so information flows between neighbouring groups::

       heads h <  H/2:  i attends to j  iff  j ≤ i  and  ⌊i / G⌋ == ⌊j / G⌋
       heads h >= H/2:  i attends to j  iff  j ≤ i  and  ⌊((i − G/2) mod T) / G⌋ == ⌊((j − G/2) mod T) / G⌋

   computed as the paper's pseudocode does: roll the shifted heads of Q, K, V by −G/2 tokens, fold the
   groups into the batch, (B, H, n·G, d) -> (B·n, H, G, d), run the model's own attention, unfold,
   roll back. At inference (eval mode) attention is the model's full attention, unchanged.
2. Trainable embeddings and normalisation layers ("LoRA+" in the paper, §3.3): the parameters named by
   `embedder_and_normalizer` are trained with the LoRA weights.

The S²-Attn is an attention function registered with transformers' `AttentionInterface`: the wrapped
attention module's config reports that function as its implementation (as `prefix.py` does), and the
function calls the model's own implementation (sdpa or eager) on the grouped tensors.

Differences from the paper / ms-swift:
- The mask inside each group is the model's own attention mask (causal + padding) restricted to the
  group. In the shifted heads the last group wraps around (it holds the last G/2 tokens and the first
  G/2); the paper and ms-swift apply a fresh causal mask there, so the first G/2 tokens see the last
  ones (a look-ahead); here they do not. Padding masks are kept per group (ms-swift reuses the first
  group's mask for all groups). Elsewhere the pattern is the paper's.
- The embeddings and norms are trained as copies (as LoRA's `modules_to_save`), not in place as in
  ms-swift: `disable_adapter()` and deleting the adapter give back the base model exactly. The
  checkpoint keys are the modules' own (`model.embed_tokens.weight`), as ms-swift writes them. A tied
  output head (`tie_word_embeddings`) keeps the frozen embedding.
- `model_type=None` applies S²-Attn to the LLaMA-structure attention modules found in the model
  (ms-swift applies it only with `model_type='llama'` and trains plain LoRA otherwise); a model without
  such modules is refused.
- With several active LongLoRA adapters, S²-Attn runs once, with the most recently added one's ratio.
  `output_attentions` gives no attention weights in training mode.
"""
from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Union

import torch
import torch.nn as nn
from einops import rearrange

from ..core import TunerLayer, register_tuner
from ..core.config import Range
from ..core.layer import canonical_name
from ..core.modules import Settings, model_attention, route_attention
from ..core.modules_to_save import ModulesToSaveLayer
from ..core.targeting import replace_module
from .lora import LoRAConfig, LoRATuner

ATTN_NAME = "swiftlite_s2_attn"
# (attention module, group_size_ratio) of the attention call in progress, set only in training
_ACTIVE_S2: contextvars.ContextVar = contextvars.ContextVar("swiftlite_s2_attn", default=None)
# Attention classes with LLaMA's structure (RoPE'd Q, K, V handed to `ALL_ATTENTION_FUNCTIONS`, causal).
LLAMA_ATTENTION_CLASSES = frozenset({"LlamaAttention", "MistralAttention", "Qwen2Attention"})

GroupRatio = Annotated[float, Range(0.0, 1.0, "a number in (0, 1]", low_open=True)]
ParameterSelector = Annotated[Union[str, list[str]],
                              "a regex string (matching a whole parameter name) or a list of name substrings"]


@dataclass
class LongLoRAConfig(LoRAConfig):
    """LoRAConfig plus ms-swift's LongLoRA fields (names and defaults as in ms-swift)."""

    swift_type: str = field(default="longlora")  # ms-swift's spelling (SwiftTuners.LONGLORA)
    # parameters trained in full: a str is a regex matched against whole parameter names, a list holds
    # substrings of parameter names (ms-swift's rule); [] trains no embedding or norm
    embedder_and_normalizer: ParameterSelector = field(default_factory=lambda: ["embed", "norm"])
    model_type: str | None = None  # 'llama' or None (find the LLaMA-structure attention modules)
    group_size_ratio: GroupRatio = 0.25  # G / T; the paper trains with 1/4 of the target context

    _invalid_examples: ClassVar[dict] = {**LoRAConfig._invalid_examples, "group_size_ratio": 0.0,
                                         "embedder_and_normalizer": "(", "model_type": "gpt2"}

    def validate(self) -> None:
        super().validate()
        self._require(0 < self.group_size_ratio <= 1, "group_size_ratio",
                      f"must be in (0, 1] (G = ratio · sequence length), got {self.group_size_ratio!r}")
        self._require(self.model_type in (None, "llama"), "model_type",
                      f"S²-Attn is implemented for the LLaMA structure: use 'llama' or None, got {self.model_type!r}")
        if isinstance(self.embedder_and_normalizer, str):
            try:
                re.compile(self.embedder_and_normalizer)
            except re.error as err:
                self._require(False, "embedder_and_normalizer", f"{self.embedder_and_normalizer!r} is not a regex "
                                                                 f"({err}); e.g. r'.*(embed_tokens|norm).*'")

    def selects_parameter(self, name: str) -> bool:
        """ms-swift's rule: a str must match the whole name, a list entry be a substring of it."""
        spec = self.embedder_and_normalizer
        return bool(re.fullmatch(spec, name)) if isinstance(spec, str) else any(key in name for key in spec)


# ---- S²-Attn ------------------------------------------------------------------------------------
def group_mask(attention_mask: torch.Tensor, group_size: int, shift: int) -> torch.Tensor:
    """(B, 1, T, T) mask -> (B·n, 1, G, G): its diagonal blocks after rolling the tokens by −shift."""
    m = attention_mask.roll((-shift, -shift), dims=(2, 3)) if shift else attention_mask
    b, _, t, _ = m.shape
    n = t // group_size
    blocks = m.reshape(b, 1, n, group_size, n, group_size).diagonal(dim1=2, dim2=4)  # (B, 1, G, G, n)
    return rearrange(blocks, "b one i j n -> (b n) one i j")


def shifted_sparse_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, group_size: int, attend, **kwargs: Any):
    """S²-Attn with `attend(module, q, k, v, mask, **kwargs) -> ((B, T, H, d), weights)` (a transformers
    attention function) as the attention inside each group. query (B, H, T, d); key, value (B, H_kv, T, d)."""
    b, h, t, _ = query.shape
    h_kv, g, s = key.shape[1], group_size, group_size // 2
    h_half, kv_half = h // 2, (h // 2) * h_kv // h  # unshifted query heads / the kv heads they use
    if attention_mask is None:  # what sdpa would do with is_causal: an explicit causal mask (additive)
        causal = torch.ones(t, t, dtype=torch.bool, device=query.device).tril()
        attention_mask = torch.zeros(t, t, dtype=query.dtype, device=query.device).masked_fill(
            ~causal, torch.finfo(query.dtype).min)[None, None]
    attention_mask = attention_mask[..., :t].expand(b, 1, t, t)

    def shift(x: torch.Tensor, first: int) -> torch.Tensor:  # heads >= first move up by s tokens
        return torch.cat((x[:, :first], x[:, first:].roll(-s, dims=2)), dim=1)

    def fold(x: torch.Tensor) -> torch.Tensor:  # (B, H, n·G, d) -> (B·n, H, G, d)
        return rearrange(x, "b h (n g) d -> (b n) h g d", g=g)

    q, k, v = fold(shift(query, h_half)), fold(shift(key, kv_half)), fold(shift(value, kv_half))
    # per head: the unshifted heads see the mask's diagonal blocks, the shifted ones those of the rolled mask
    mask = torch.cat((group_mask(attention_mask, g, 0).expand(-1, h_half, g, g),
                      group_mask(attention_mask, g, s).expand(-1, h - h_half, g, g)), dim=1)  # (B·n, H, G, G)
    kwargs.pop("is_causal", None)
    out, _ = attend(module, q, k, v, mask, **kwargs)  # (B·n, G, H, d)
    out = rearrange(out, "(b n) g h d -> b (n g) h d", b=b)  # (B, T, H, d)
    # shift back: the shifted heads' outputs move down by s tokens
    return torch.cat((out[:, :, :h_half], out[:, :, h_half:].roll(s, dims=1)), dim=2), None


def _s2_attention(module: nn.Module, query, key, value, attention_mask, **kwargs):
    """The registered attention function: S²-Attn while a LongLoRA adapter trains, else the model's own."""
    original = model_attention(module, "LongLoRAConfig")
    active = _ACTIVE_S2.get()
    if active is None or active[0] is not module:
        return original(module, query, key, value, attention_mask, **kwargs)
    t = query.shape[2]
    if key.shape[2] != t:
        raise ValueError(f"LongLoRA S²-Attn runs on whole sequences in training, but got {t} queries for "
                         f"{key.shape[2]} keys (a cache?); call model.eval() to generate, or pass use_cache=False")
    group_size = int(t * active[1])
    if group_size < 1 or t % group_size:
        raise ValueError(f"LongLoRAConfig.group_size_ratio={active[1]}: a sequence of {t} tokens does not split "
                         f"into groups of G = int({t} · {active[1]}) = {group_size} tokens; pad the batch to a length "
                         f"L for which int(L · ratio) divides L (for ratio = 1/k: a multiple of k)")
    return shifted_sparse_attention(module, query, key, value, attention_mask, group_size, original, **kwargs)


class ShiftedSparseAttention(TunerLayer):
    """Wraps a LLaMA attention module: S²-Attn in training while one of its adapters is active."""

    adapter_attrs = ("s2_attn",)
    mergeable = True  # nothing to fold: the shift is a training-time attention pattern

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.s2_attn = nn.ModuleDict()
        route_attention(base_layer, ATTN_NAME, _s2_attention)
        self.train(base_layer.training)

    def add_adapter(self, adapter_name: str, config: LongLoRAConfig) -> None:
        self.s2_attn[adapter_name] = Settings(group_size_ratio=config.group_size_ratio)

    def unwrap(self) -> nn.Module:
        self.base_layer.config = self.base_layer.config.base
        return self.base_layer

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        pass

    def unmerge(self, adapter_name: str) -> None:
        pass

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        active = self.active_adapters
        # the attention module's own mode (a new wrapper starts in training mode, whatever the base's)
        if not (self.base_layer.training and active):
            return self.base_layer(*args, **kwargs)  # full attention
        token = _ACTIVE_S2.set((self.base_layer, self.s2_attn[active[-1]].group_size_ratio))
        try:
            return self.base_layer(*args, **kwargs)
        finally:
            _ACTIVE_S2.reset(token)


# ---- where it attaches ----------------------------------------------------------------------------
def _inside_adapter(model: nn.Module, path: str) -> bool:
    """Does `path` lead into a tuner layer's adapter weights (anything but its base_layer)?"""
    module = model
    for part in path.split(".") if path else []:
        if isinstance(module, TunerLayer) and part != "base_layer":
            return True
        module = module._modules[part]
    return False


def attention_paths(model: nn.Module) -> list[str]:
    """Paths of the LLaMA-structure attention modules (or of their S²-Attn wrappers)."""
    paths = []
    for path, module in model.named_modules():
        if isinstance(module, ShiftedSparseAttention):
            paths.append(path)
        elif type(module).__name__ in LLAMA_ATTENTION_CLASSES and not _inside_adapter(model, path):
            parent = model.get_submodule(path.rpartition(".")[0]) if "." in path else model
            if isinstance(parent, ShiftedSparseAttention):
                continue
            if isinstance(parent, TunerLayer):
                raise ValueError(f"LongLoRAConfig: the attention module {canonical_name(model, path)!r} is already "
                                 f"wrapped by {type(parent).__name__}; S²-Attn cannot be combined with it")
            paths.append(path)
    return paths


def trainable_paths(model: nn.Module, config: LongLoRAConfig) -> list[str]:
    """Paths of the modules owning a parameter selected by `embedder_and_normalizer` (canonical names)."""
    paths = []
    for path, module in model.named_modules():
        if isinstance(module, TunerLayer) or _inside_adapter(model, path):
            continue
        names = [canonical_name(model, f"{path}.{p}" if path else p) for p, _ in module.named_parameters(recurse=False)]
        if any(config.selects_parameter(n) for n in names):
            paths.append(path)
    return paths


@register_tuner
class LongLoRATuner(LoRATuner):
    config_class = LongLoRAConfig
    peft_type = None  # the embeddings/norms and S²-Attn have no PEFT form
    peft_spec = None

    @classmethod
    def check(cls, model: nn.Module, config: LongLoRAConfig, names: list[str]) -> None:
        paths = attention_paths(model)
        if not paths:
            raise ValueError(f"LongLoRAConfig.model_type={config.model_type!r}: found no LLaMA-structure attention "
                             f"module ({', '.join(sorted(LLAMA_ATTENTION_CLASSES))}) for S²-Attn")
        attn = model.get_submodule(paths[0])
        attn = attn.base_layer if isinstance(attn, ShiftedSparseAttention) else attn
        heads, kv_heads = attn.config.num_attention_heads, attn.config.num_key_value_heads
        if (heads // 2) % (heads // kv_heads):
            raise ValueError(f"LongLoRAConfig: S²-Attn shifts half of the {heads} query heads, but groups of "
                             f"{heads // kv_heads} query heads share a key/value head, so the halves would share one")
        spec = config.embedder_and_normalizer
        if spec and not trainable_paths(model, config):
            raise ValueError(f"LongLoRAConfig.embedder_and_normalizer={spec!r} matched no parameter; parameter names "
                             f"look like {[n for n, _ in model.named_parameters()][:3]} (use [] to train none)")

    @classmethod
    def inject(cls, model: nn.Module, config: LongLoRAConfig, adapter_name: str) -> None:
        super().inject(model, config, adapter_name)  # LoRA on target_modules
        for path in trainable_paths(model, config):  # trainable copies of the embeddings and norms
            if path.endswith(".base_layer"):  # already wrapped: by another adapter's copy, or by LoRA
                parent = model.get_submodule(path.rpartition(".")[0])
                if not isinstance(parent, ModulesToSaveLayer):
                    raise ValueError(f"LongLoRAConfig.embedder_and_normalizer={config.embedder_and_normalizer!r} "
                                     f"selects {canonical_name(model, path)!r}, which {type(parent).__name__} wraps "
                                     f"(is it in target_modules too?); leave it out of one of them")
                parent.add_adapter(adapter_name, config)
            else:
                layer = ModulesToSaveLayer(model.get_submodule(path))
                layer.add_adapter(adapter_name, config)
                replace_module(model, path, layer)
        for path in attention_paths(model):  # S²-Attn in training
            module = model.get_submodule(path)
            if not isinstance(module, ShiftedSparseAttention):
                module = ShiftedSparseAttention(module)
                replace_module(model, path, module)
            module.add_adapter(adapter_name, config)
