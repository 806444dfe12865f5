"""PEFT's checkpoint format, for every tuner whose weights are PEFT's under other names.

PEFT (huggingface/peft) saves one adapter as::

    adapter_config.json         {"peft_type": "LORA", "r": 8, "target_modules": [...], ...}
    adapter_model.safetensors   base_model.model.<module>.lora_A.weight, ...

swiftlite names the same tensor `<module>.lora_A.<adapter>.weight`, so converting is renaming:
drop (or insert) the adapter name after the container, add (or strip) PEFT's `base_model.model.`
prefix. A tuner opts in with two class attributes: `peft_type` (PEFT's name of the method) and
`peft_spec`, a `PeftSpec` that lists its containers, the key suffixes PEFT spells differently, and
how the config fields correspond. The code below does the rest for every such tuner.

Two kinds of keys hold no adapter name and are kept as they are (only the prefix changes):
- `modules_to_save` copies, saved under the module's own names (`lm_head.weight`), as PEFT saves
  them. PEFT matches `modules_to_save` entries as plain suffixes (`head` matches `lm_head`).
- frozen base weights `<module>.base_layer.weight`: PEFT also saves the embedding layers'
  weights when `embed_tokens` / `lm_head` is a LoRA target (`save_embedding_layers="auto"`), and on
  loading copies them into the base layer. `split_base_weights` / `load_base_weights` do the same.
  swiftlite itself never writes them (PEFT does not need them to load).

Not handled: a whole untargeted embedding (`model.embed_tokens.weight`), which PEFT saves when the
vocabulary was resized during fine-tuning; such a checkpoint is refused with a message.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

PEFT_PREFIX = "base_model.model."
_EMPTY = (None, {}, [])  # PEFT writes unset options in any of these forms


@dataclass(frozen=True)
class PeftSpec:
    """How a tuner's checkpoint maps onto PEFT's (see the module docstring)."""

    containers: frozenset[str]  # attributes followed by the adapter name in swiftlite keys ("lora_A")
    fields: tuple[str, ...]  # config fields that PEFT's config has under the same name
    renames: dict[str, str] = field(default_factory=dict)  # swiftlite key suffix -> PEFT's
    written: dict[str, Any] = field(default_factory=dict)  # PEFT fields written with these fixed values
    load_only: dict[str, Any] = field(default_factory=dict)  # PEFT fields swiftlite loads only at this value
    accepted: dict[str, tuple] = field(default_factory=dict)  # PEFT field -> the values swiftlite can load
    swift_only: dict[str, Any] = field(default_factory=dict)  # swiftlite fields PEFT has no form for, unless at this value


def to_peft(tuner: type, config: Any, weights: dict[str, torch.Tensor], adapter_name: str
            ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(adapter_config.json dict, weights) as PEFT's `save_pretrained` writes them."""
    spec = _spec_of(tuner)
    for name, value in spec.swift_only.items():
        if getattr(config, name) != value:
            raise ValueError(f"{type(config).__name__}.{name}={getattr(config, name)!r}: PEFT has no such option, "
                             f"so this adapter has no PEFT format")
    peft_config = {"peft_type": tuner.peft_type, "task_type": None, "base_model_name_or_path": None,
                   "revision": None, "inference_mode": True, **spec.written}
    for name in spec.fields:
        value = getattr(config, name)
        peft_config[name] = list(value) if isinstance(value, (tuple, set)) else value
    out = {}
    for key, value in weights.items():
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            if part in spec.containers and parts[i + 1] == adapter_name:
                del parts[i + 1]  # `lora_A.<adapter>.weight` -> `lora_A.weight`
                break
        key = _rename_suffix(".".join(parts), spec.renames)
        out[PEFT_PREFIX + key] = value
    return peft_config, out


def from_peft(tuner: type, peft_config: dict[str, Any], weights: dict[str, torch.Tensor], adapter_name: str
              ) -> tuple[Any, dict[str, torch.Tensor]]:
    """Inverse of `to_peft`: (config, swiftlite weights). Base-layer weights PEFT saved are kept under
    their own names (`<module>.base_layer.weight`); take them out with `split_base_weights`."""
    spec = _spec_of(tuner)
    for name, only in spec.load_only.items():
        if peft_config.get(name, only) not in (only, *_EMPTY):
            raise ValueError(f"PEFT {tuner.peft_type} config: {name}={peft_config[name]!r} is not supported by "
                             f"swiftlite; load this checkpoint with peft.PeftModel.from_pretrained instead")
    for name, values in spec.accepted.items():
        if name in peft_config and peft_config[name] not in values:
            raise ValueError(f"PEFT {tuner.peft_type} config: {name}={peft_config[name]!r} is not supported by "
                             f"swiftlite (it supports {list(values)}); load this checkpoint with "
                             f"peft.PeftModel.from_pretrained instead")
    values = {name: peft_config[name] for name in spec.fields if name in peft_config}
    for name, value in values.items():
        if isinstance(value, list):  # PEFT keeps target_modules as a set, saved in any order
            values[name] = sorted(value)
    config = tuner.config_class(**values)
    inverse = {peft: ours for ours, peft in spec.renames.items()}
    to_save = getattr(config, "modules_to_save", None)
    out = {}
    for key, value in weights.items():
        key = key[len(PEFT_PREFIX):] if key.startswith(PEFT_PREFIX) else key
        parts = _rename_suffix(key, inverse).split(".")
        container = next((i for i, part in enumerate(parts) if part in spec.containers), None)
        if container is not None:
            parts.insert(container + 1, adapter_name)  # `lora_A.weight` -> `lora_A.<adapter>.weight`
            out[".".join(parts)] = value
        elif is_base_weight(key):
            out[key] = value
        elif _in_modules_to_save(parts, to_save):
            out[key] = value  # a modules_to_save copy, already under the module's own names
        else:
            raise ValueError(f"PEFT checkpoint key {key!r} is neither a {tuner.peft_type} weight ({sorted(spec.containers)}) "
                             f"nor in modules_to_save={to_save!r}. (PEFT saves a whole untargeted embedding like this "
                             f"when the vocabulary was resized; swiftlite does not load that: use "
                             f"peft.PeftModel.from_pretrained)")
    return config, out


def _spec_of(tuner: type) -> PeftSpec:
    if tuner.peft_type is None or not isinstance(tuner.peft_spec, PeftSpec):
        raise ValueError(f"{tuner.__name__}: converting to or from PEFT's format needs both `peft_type` and "
                         f"`peft_spec = PeftSpec(...)` on the tuner class (see swiftlite/core/peft_format.py)")
    return tuner.peft_spec


def _rename_suffix(key: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        if key.endswith("." + old):
            return key[: -len(old)] + new
    return key


def _in_modules_to_save(parts: list[str], targets: Any) -> bool:
    """PEFT's rule: some module on the key's path ends with an entry (`head` matches `lm_head`)."""
    if not targets:
        return False
    targets = [targets] if isinstance(targets, str) else list(targets)
    return any(".".join(parts[:i]).endswith(t) for i in range(1, len(parts)) for t in targets)


# ---- frozen base weights that PEFT saves next to an embedding LoRA --------------------------------
def is_base_weight(key: str) -> bool:
    """`<module>.base_layer.<param>`: a frozen base weight, not an adapter weight."""
    parts = key.split(".")
    return len(parts) >= 3 and parts[-2] == "base_layer"


def split_base_weights(weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(adapter weights, base weights) of a converted PEFT checkpoint."""
    base = {k: v for k, v in weights.items() if is_base_weight(k)}
    return {k: v for k, v in weights.items() if k not in base}, base


def load_base_weights(model: nn.Module, base_weights: dict[str, torch.Tensor]) -> None:
    """Copy saved base weights into `model` (its tuner layers' `base_layer`s), as PEFT's loading does.

    Every key and shape is checked before anything is copied."""
    params = dict(model.named_parameters())
    for key, value in base_weights.items():
        if key not in params:
            raise ValueError(f"PEFT checkpoint key {key!r}: the model has no such base weight (is {key.rsplit('.', 2)[0]!r} "
                             f"a target of this adapter?)")
        if tuple(value.shape) != tuple(params[key].shape):
            raise ValueError(f"PEFT checkpoint key {key!r}: shape {tuple(value.shape)} does not fit the model's "
                             f"{tuple(params[key].shape)} (was the vocabulary resized? resize the model's embeddings first)")
    with torch.no_grad():
        for key, value in base_weights.items():
            params[key].copy_(value.to(params[key].dtype))


# ---- PEFT's per-module options (LoRA's rank_pattern / alpha_pattern) ------------------------------
def pattern_value(patterns: dict[str, Any], name: str, default: Any) -> Any:
    """PEFT's rule: the value of the first key `k` (a regex) for which `(.*\\.)?k$` matches the whole
    module `name`, so 'v_proj' picks every `...v_proj` and 'layers.0.self_attn.v_proj' one of them;
    `default` when no key matches."""
    return next((v for k, v in patterns.items() if re.match(rf"(.*\.)?({k})$", name)), default)


def bad_pattern_key(patterns: dict[str, Any]) -> str | None:
    """What is wrong with the first key of `patterns` that is not a regex (None: all are)."""
    for key in patterns:
        try:
            re.compile(key)
        except re.error as err:
            return f"key {key!r} is not a regex ({err}); use a module name such as 'v_proj'"
    return None
