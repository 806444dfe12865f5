"""Prompt: Visual Prompt Tuning, deep variant (Jia et al., 2022, arXiv:2203.12119).

Learned prompt tokens P_i ∈ R^{p×d} join the token sequence of every matched layer L_i::

    [P_1; X_1]       = L_1([P_1; X_0])                  the first matched layer inserts P_1
    [Z_{i+1}; X_{i+1}] = L_{i+1}([P_{i+1}; X_i])         each later one overwrites the prompt slot
                                                        with its own P_{i+1} (Z is discarded)

so the frozen layers attend to p extra learned tokens. With `attach_front=False` the prompts sit at the
end of the sequence instead. `extract_embedding=True` drops the prompt slot from the last matched layer's
output, so the model's output has the base's shape (use it for ViT, whose head reads token 0).

Where the tensors are: the hidden states are the layer's argument `embedding_pos` and the attention mask
is `attention_mask_pos` (an int is a position in the layer's `forward` signature, a str a parameter name;
both are resolved through the signature, so it does not matter whether the caller passed them by position
or by keyword). The mask gets `prompt_length` extra key columns holding `attention_mask_value`:
- 2-D (B, T) masks: e.g. 1 for a 0/1 padding mask; 4-D additive float masks (B, 1, Tq, Tk): 0 (default);
- boolean masks (transformers 5's sdpa path) have one meaning of "visible": prompts are made visible (True);
- 4-D masks also get rows for the prompt queries (a copy of the first / last query row).
Rotary models (LLaMA: `position_embeddings=(cos, sin)`) give the prompt tokens rotation angle 0.

Differences from the paper / from ms-swift:
- the first matched module (in model order) inserts, all later matched modules overwrite, and only the
  last one extracts (ms-swift decides "first" by the name ending in `.0` and extracts at every layer);
- `embedding_pos=None` means the first argument; `attention_mask_pos=None` means the parameter named
  `attention_mask` if the layer has one;
- target a contiguous run of layers up to the last one that needs the prompts: a non-matched layer between
  them sees a mask / rotary table shorter than its sequence.
Scope: full-sequence forwards (training, scoring, ViT/BERT inference). Cached generation in decoder LMs is
not supported: each step's single token would be taken for the prompt slot. Several Prompt adapters may
be active together if they target the same layers. Identity at init is not promised (prompts are random,
as in VPT), but `disable_adapter()` gives exactly the base output.

Structure and checkpoints as in ms-swift: adapter `<name>` is the submodule `prompt_<name>` of each matched
layer (a `PromptModule` holding `prompt_token` of shape (1, p, d)), saved as `<layer>.prompt_<name>.prompt_token`.

Not mergeable: the prompts are extra tokens in the sequence, not a weight update.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Index, PositiveInt, Target
from ..core.tuner import feature_width, forward_arguments, said_by
from ..core.targeting import replace_module
from ..core.modules import apply_to_hidden, innermost_base_layer


@dataclass
class PromptConfig(SwiftConfig):
    """Field names and defaults follow ms-swift's `PromptConfig`."""

    swift_type: str = field(default="PROMPT")
    dim: PositiveInt | list[PositiveInt] | None = None  # hidden size d of the prompts (a list: one per matched layer)
    target_modules: Target = None  # the transformer layers (regex full match, or list of names / suffixes)
    embedding_pos: Index | str | None = None  # the hidden-states argument of the layer (None: the first)
    attention_mask_pos: Index | str | None = None  # the mask argument (None: `attention_mask` if present)
    attention_mask_value: float | bool = 0.0  # mask entry for the prompt keys (0: visible additively)
    prompt_length: PositiveInt = 16  # p, the number of prompt tokens per layer (ms-swift default)
    attach_front: bool = True  # prompts before (True) or after (False) the tokens
    extract_embedding: bool = False  # drop the prompts from the last matched layer's output

    _invalid_examples: ClassVar[dict] = {"dim": 0, "prompt_length": 0, "embedding_pos": 1.5, "target_modules": None}

    def validate(self) -> None:
        dims = self.dim if isinstance(self.dim, list) else [self.dim]
        self._require(all(isinstance(d, int) and d > 0 for d in dims) and dims, "dim",
                      f"must be the positive hidden size of the layers (or a list of them), got {self.dim!r}")
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the transformer layers, e.g. r'.*layers\\.\\d+' or r'.*encoder\\.layer\\.\\d+'")
        self._require(isinstance(self.prompt_length, int) and self.prompt_length > 0, "prompt_length",
                      f"must be a positive int, got {self.prompt_length!r}")
        for name in ("embedding_pos", "attention_mask_pos"):
            value = getattr(self, name)
            self._require(value is None or (isinstance(value, (int, str)) and not isinstance(value, bool)), name,
                          f"must be None, an argument index (int) or an argument name (str), got {value!r}")


class PromptModule(nn.Module):
    """One adapter's prompts P ∈ R^{1×p×d} in one layer (names as in ms-swift's `PromptModule`)."""

    def __init__(self, prompt_length: int, dim: int, device=None, dtype=None) -> None:
        super().__init__()
        token = torch.empty(1, prompt_length, dim, device=device, dtype=dtype)  # (1, p, d)
        self.prompt_token = nn.Parameter(nn.init.xavier_uniform_(token))


class PromptLayer(TunerLayer):
    """Wraps one transformer layer: puts its prompts into the hidden states and pads the mask."""

    adapter_prefixes = ("prompt_",)  # adapter <name> is the child `prompt_<name>`, as in ms-swift

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.configs: dict[str, PromptConfig] = {}
        self.role: dict[str, tuple[bool, bool]] = {}  # adapter -> (inserts here, extracts here)
        self.signature = inspect.signature(base_layer.forward)

    def add_adapter(self, adapter_name: str, config: PromptConfig, dim: int = None, first: bool = True,
                    last: bool = True) -> None:
        device, dtype = self._base_device_dtype()
        prompts = PromptModule(config.prompt_length, dim or config.dim, device=device, dtype=dtype)
        self.add_adapter_module("prompt_", adapter_name, prompts)
        self.configs[adapter_name] = config
        self.role[adapter_name] = (first, last)
        for pos in (config.embedding_pos, config.attention_mask_pos):
            if pos is not None:
                self._param_name(pos)  # fail now, not at the first forward

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.configs.pop(adapter_name, None)
        self.role.pop(adapter_name, None)


    def prompts(self, adapter_name: str) -> nn.Parameter:
        """P of `adapter_name` in this layer, (1, p, d) (the parameter `prompt_<name>.prompt_token`)."""
        return self._modules["prompt_" + adapter_name].prompt_token

    def _param_name(self, pos: int | str) -> str:
        names = [n for n, p in self.signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if isinstance(pos, int):
            if not 0 <= pos < len(names):
                raise ValueError(f"PromptConfig: position {pos} is not an argument of "
                                 f"{type(self.base_layer).__name__}.forward{self.signature}")
            return names[pos]
        return pos

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        active = self.active_adapters
        if not active:
            return self.base_layer(*args, **kwargs)
        bound = self.signature.bind(*args, **kwargs)
        arguments = _flat_arguments(bound, self.signature)
        first_config = self.configs[active[0]]
        hidden_name = self._param_name(first_config.embedding_pos or 0)
        x = arguments[hidden_name]  # (B, T, d); after the first matched layer T includes the prompts

        # Put each adapter's prompts in its slot: front slots count from 0, back slots from the end.
        front, back = 0, 0
        for name in active:
            cfg, (first, _) = self.configs[name], self.role[name]
            p = self.prompts(name).expand(x.shape[0], -1, -1).to(x.dtype)  # (1, p, d) -> (B, p, d)
            n = cfg.prompt_length
            if cfg.attach_front:
                # insert: [.., P, X]; later layers overwrite the slot: [.., P, X[p:]]
                x = torch.cat((x[:, :front], p, x[:, front + (0 if first else n):]), dim=1)
                front += n
            else:
                end = x.shape[1] - back
                x = torch.cat((x[:, :end - (0 if first else n)], p, x[:, end:]), dim=1)
                back += n
        arguments[hidden_name] = x
        total = front + back  # prompt tokens now in the sequence

        mask_name = self._mask_name(first_config)
        if mask_name is not None and arguments.get(mask_name) is not None:
            arguments[mask_name] = pad_mask(arguments[mask_name], front, back, x.shape[1],
                                            first_config.attention_mask_value)
        cos_sin = arguments.get("position_embeddings")
        if isinstance(cos_sin, tuple) and len(cos_sin) == 2 and cos_sin[0].shape[-2] + total == x.shape[1]:
            arguments["position_embeddings"] = _pad_rotary(cos_sin, front, back)

        out = self.base_layer(**arguments)
        for name in reversed(active):  # extract from the innermost slot outwards
            cfg = self.configs[name]
            n = cfg.prompt_length
            if cfg.attach_front:
                front -= n
            else:
                back -= n
            if self.role[name][1] and cfg.extract_embedding:
                offset = front if cfg.attach_front else back
                out = apply_to_hidden(out, None, lambda h: _without_slot(h, offset, n, from_end=not cfg.attach_front))
        return out

    def _mask_name(self, config: PromptConfig) -> str | None:
        if config.attention_mask_pos is not None:
            return self._param_name(config.attention_mask_pos)
        return "attention_mask" if "attention_mask" in self.signature.parameters else None


def _without_slot(h: torch.Tensor, offset: int, n: int, from_end: bool) -> torch.Tensor:
    """Drop the n prompt tokens that start `offset` tokens from the front (or the end): (B, T, d) -> (B, T - n, d)."""
    start = h.shape[1] - offset - n if from_end else offset
    return torch.cat((h[:, :start], h[:, start + n:]), dim=1)


def _flat_arguments(bound: inspect.BoundArguments, signature: inspect.Signature) -> dict[str, Any]:
    """Bound arguments as one keyword dict (extra **kwargs spread out)."""
    out = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind == inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind == inspect.Parameter.VAR_POSITIONAL:
            raise TypeError("PromptLayer: layers taking *args are not supported; target the layer itself")
        else:
            out[name] = value
    return out


def pad_mask(mask: torch.Tensor, front: int, back: int, length: int, value: float | int | bool) -> torch.Tensor:
    """Give `mask` columns (and, for 4-D masks, query rows) for `front`/`back` prompt tokens."""
    if mask.shape[-1] == length:
        return mask  # already covers the prompts
    if mask.shape[-1] + front + back != length:
        raise ValueError(f"PromptLayer: attention mask has {mask.shape[-1]} key positions but the sequence has "
                         f"{length} tokens with {front + back} prompts; target every layer after the first one")
    fill = True if mask.dtype == torch.bool else value
    # key columns:  (..., Tk) -> (..., front + Tk + back)
    cols = [torch.full((*mask.shape[:-1], n), fill, dtype=mask.dtype, device=mask.device) for n in (front, back)]
    mask = torch.cat((cols[0], mask, cols[1]), dim=-1)
    if mask.dim() == 4 and mask.shape[-2] > 1:
        # query rows of the prompts: (B, H, Tq, Tk') -> (B, H, front + Tq + back, Tk')
        rows = (mask[..., :1, :].expand(-1, -1, front, -1), mask[..., -1:, :].expand(-1, -1, back, -1))
        mask = torch.cat((rows[0], mask, rows[1]), dim=-2)
    return mask


def _pad_rotary(cos_sin: tuple[torch.Tensor, torch.Tensor], front: int, back: int):
    """Rotary (cos, sin) of shape (B, T, d) -> (B, front + T + back, d); prompts get angle 0 (cos 1, sin 0)."""
    cos, sin = cos_sin
    ones = lambda n: cos.new_ones((*cos.shape[:-2], n, cos.shape[-1]))  # noqa: E731
    zeros = lambda n: sin.new_zeros((*sin.shape[:-2], n, sin.shape[-1]))  # noqa: E731
    return torch.cat((ones(front), cos, ones(back)), dim=-2), torch.cat((zeros(front), sin, zeros(back)), dim=-2)


@register_tuner
class PromptTuner(Tuner):
    """Wraps each matched transformer layer; its prompt tokens join the layer's input sequence."""

    config_class = PromptConfig
    layer_class = PromptLayer
    identity_at_init = False
    not_mergeable_reason = "prompt tokens are extra inputs to the layers, not a change of their weights"

    @classmethod
    def check(cls, model: nn.Module, config: PromptConfig, names: list[str]) -> None:
        if isinstance(config.dim, list) and len(config.dim) != len(names):
            raise ValueError(f"PromptConfig.dim: {len(config.dim)} dims for {len(names)} matched layers; "
                             f"give one dim per layer or a single int")
        for i, name in enumerate(names):
            module = model.get_submodule(name)
            base = innermost_base_layer(module)
            if not list(base.children()):
                raise ValueError(f"PromptConfig.target_modules matched {name!r} ({type(base).__name__}), a single "
                                 f"layer; prompts are tokens put into the hidden-states sequence of a transformer "
                                 f"layer: target the layers, e.g. r'.*layers\\.\\d+' or r'.*encoder\\.layer\\.\\d+'")
            arguments, _ = forward_arguments(base)
            for field_name in ("embedding_pos", "attention_mask_pos"):
                pos = getattr(config, field_name)
                bad = (isinstance(pos, int) and not 0 <= pos < len(arguments)) or (isinstance(pos, str) and pos not in arguments)
                if bad:
                    what = f"position {pos} is not an argument" if isinstance(pos, int) else "names no argument"
                    raise ValueError(f"PromptConfig.{field_name}={pos!r}: {what} of {name!r} ({type(base).__name__}"
                                     f".forward takes {arguments}); give an index into that list or one of its names")
            dim = config.dim[i] if isinstance(config.dim, list) else config.dim
            found = feature_width(module, "in") if config.embedding_pos in (None, 0) else None
            if found is not None and found[0] != dim:
                raise ValueError(f"PromptConfig.dim={dim}: the hidden states entering {name!r} ({type(base).__name__}) "
                                 f"have {found[0]} features{said_by(found)}; set dim={found[0]}")

    @classmethod
    def inject(cls, model: nn.Module, config: PromptConfig, adapter_name: str) -> None:
        names = cls.match(model, config)
        if isinstance(config.dim, list) and len(config.dim) != len(names):
            raise ValueError(f"PromptConfig.dim: {len(config.dim)} dims for {len(names)} matched layers; "
                             f"give one dim per layer or a single int")
        for i, name in enumerate(names):
            module = model.get_submodule(name)
            layer = module if isinstance(module, PromptLayer) else PromptLayer(module)
            dim = config.dim[i] if isinstance(config.dim, list) else config.dim
            layer.add_adapter(adapter_name, config, dim=dim, first=i == 0, last=i == len(names) - 1)
            if layer is not module:
                replace_module(model, name, layer)
