"""Small module helpers that several tuners share: one definition each.

- `transformers_conv1d()`: transformers' `Conv1D` class (GPT-2's linear layer, weight stored
  (d_in, d_out)), found without importing transformers;
- `innermost_base_layer(module)`: the original module under any tuner wrappers;
- `hidden_of(out, pos)` / `with_hidden(out, pos, h)` / `apply_to_hidden(out, pos, fn)`: find (or replace) the hidden-states tensor
  inside a module's output, whether the module returns a tensor, a tuple/list or a dict/ModelOutput.
- `attention_parts(op)`: an attention module's q, k, v, o projections, heads and head width;
- `Settings(name=value, ...)`: one adapter's settings as a module without parameters, for a tuner
  that trains nothing (NEFTune's α, LongLoRA's group size);
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import torch
import torch.nn as nn

from .layer import TunerLayer


def transformers_conv1d() -> type | None:
    """transformers' `Conv1D` class if transformers is already imported, else None.

    A model holding a Conv1D was built by transformers, so transformers is imported whenever one
    can be met; looking in `sys.modules` keeps `import swiftlite` light (it never imports it)."""
    pytorch_utils = sys.modules.get("transformers.pytorch_utils")
    return getattr(pytorch_utils, "Conv1D", None) if pytorch_utils is not None else None


def is_transformers_conv1d(module: nn.Module) -> bool:
    """True for transformers' Conv1D: y = x W + b with W stored (d_in, d_out)."""
    conv1d = transformers_conv1d()
    return conv1d is not None and isinstance(module, conv1d)


def with_transformers_conv1d(types: tuple[type, ...]) -> tuple[type, ...]:
    """`types` plus transformers' Conv1D when it exists (for a tuner's `supported_types`)."""
    conv1d = transformers_conv1d()
    return types + ((conv1d,) if conv1d is not None else ())


def innermost_base_layer(module: nn.Module) -> nn.Module:
    """The original module under any tuner wrappers (`layer.base_layer.base_layer...`)."""
    while isinstance(module, TunerLayer) and module.base_layer is not None:
        module = module.base_layer
    return module


def _hidden_key(out: Any, pos: int | str | None) -> int | str | None:
    """Where the hidden states sit in `out`: None (out is the tensor), an index or a key."""
    if isinstance(out, torch.Tensor):
        return None
    if isinstance(out, (tuple, list)):
        pos = 0 if pos is None else pos
        if not isinstance(pos, int) or isinstance(pos, bool):
            raise ValueError(f"hidden_pos={pos!r}: the output is a {type(out).__name__}; give an int index")
        if not -len(out) <= pos < len(out):
            raise ValueError(f"hidden_pos={pos!r}: the output is a {type(out).__name__} of length {len(out)}")
        return pos
    if isinstance(out, dict):  # includes transformers' ModelOutput
        keys = list(out.keys())
        key = pos if isinstance(pos, str) else keys[pos or 0]
        if key not in out:
            raise ValueError(f"hidden_pos={pos!r}: the output has keys {keys}")
        return key
    raise TypeError(f"cannot find hidden states in an output of type {type(out).__name__}")


def hidden_of(out: Any, pos: int | str | None = None) -> torch.Tensor:
    """The hidden-states tensor inside a module output (`pos`: index or key; None: the first)."""
    key = _hidden_key(out, pos)
    return out if key is None else out[key]


def with_hidden(out: Any, pos: int | str | None, hidden: torch.Tensor) -> Any:
    """`out` with its hidden states replaced by `hidden`; the container type is kept."""
    key = _hidden_key(out, pos)
    if key is None:
        return hidden
    if isinstance(out, dict):
        out[key] = hidden
        return out
    items = list(out)
    items[key] = hidden
    return type(out)(items)


def apply_to_hidden(out: Any, pos: int | str | None, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """`out` with its hidden states h replaced by fn(h); the container type is kept."""
    return with_hidden(out, pos, fn(hidden_of(out, pos)))


class AttentionConfigView:
    """A module's config as a tuner shows it to the module: the same object (reads and writes go
    through), except that `_attn_implementation` names the tuner's attention function."""

    def __init__(self, config: Any, implementation: str) -> None:
        object.__setattr__(self, "base", config)
        object.__setattr__(self, "_attn_implementation", implementation)

    def __getattr__(self, name: str) -> Any:
        if name == "base" or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.base, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.base, name, value)


def route_attention(module: nn.Module, name: str, function: Callable) -> None:
    """Make a transformers attention module compute attention with `function`: register it with
    `transformers.AttentionInterface` under `name` (once) and give the module a config view whose
    implementation is `name`. `function` finds the model's own implementation in
    `module.config.base._attn_implementation`; undo with `module.config = module.config.base`."""
    from transformers import AttentionInterface

    if name not in AttentionInterface():
        AttentionInterface.register(name, function)
    module.config = AttentionConfigView(module.config, name)


def model_attention(module: nn.Module, config_name: str) -> Callable:
    """The attention function the model itself would use for `module` (sdpa or eager), seen from
    inside a function installed by `route_attention`. flash-attention is refused: it takes no mask."""
    impl = module.config.base._attn_implementation
    if impl and "flash" in impl:
        raise ValueError(f"{config_name}: attn_implementation={impl!r} is not supported; load the model with "
                         f"attn_implementation='sdpa' or 'eager'")
    source = sys.modules[type(module).__module__]  # the modeling file: its registry and its eager function
    return source.ALL_ATTENTION_FUNCTIONS.get_interface(impl or "eager", source.eager_attention_forward)


class Settings(nn.Module):
    """One adapter's settings, no parameters: a module, so they sit in the layer's per-adapter container
    like weights would (`layer.neftune["default"].noise_alpha`) and show in `print(model)`."""

    def __init__(self, **values: float) -> None:
        super().__init__()
        self._names = list(values)
        for name, value in values.items():
            setattr(self, name, float(value))

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self, name)}" for name in self._names)


# ---- an attention module's frozen projections (U-Tuning's Res-Prefix / Res-Prompt, prefix.unbind_prefix) ----
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
