"""Which parameters belong to which adapter, under canonical keys.

`SwiftModel` finds each adapter's parameters through the `TunerLayer`s that own them
(`core/layer.py`), never by name patterns.

Keys are canonical: an adapter's keys are the base model's own module names, whatever other tuners
wrap around them. A LoRA on `encoder.layer.0.attention.self.query` is saved as
`encoder.layer.0.attention.self.query.lora_A.default.weight` even when an Adapter wraps
`encoder.layer.0` (the live path then runs through `encoder.layer.0.base_layer.…`): the
`base_layer` segment of another tuner's wrapper is dropped from every key.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator, NamedTuple

import torch
import torch.nn as nn

from .layer import TunerLayer, canonical_name, tuner_layers


class Entry(NamedTuple):
    """One adapter parameter: canonical key = f"{layer}.{rel}" (see module docstring)."""

    param: nn.Parameter
    layer: str  # canonical name of the TunerLayer that owns it
    rel: str  # name inside that layer, e.g. "lora_A.default.weight"


def adapter_table(base: nn.Module, adapter_names: Iterable[str]) -> dict[str, dict[str, Entry]]:
    """{adapter: {canonical key: entry}} for each of `adapter_names`.

    A parameter reachable from several layers (a tuner layer inside another adapter's copy,
    e.g. a LoRA inside a Part copy) belongs to the outermost layer that holds it: the copy is
    the Part adapter's, whatever it contains, and LoRA's keys stay those of the base model."""
    claims: dict[int, tuple[int, str, Entry]] = {}
    for path, layer in tuner_layers(base):
        depth = path.count(".") + 1 if path else 0
        layer_name = canonical_name(base, path)
        for adapter in layer.adapter_names:
            for rel, p in layer.adapter_parameters(adapter):
                if id(p) not in claims or depth < claims[id(p)][0]:
                    claims[id(p)] = (depth, adapter, Entry(p, layer_name, canonical_rel(layer, adapter, rel)))
    table: dict[str, dict[str, Entry]] = {name: {} for name in adapter_names}
    for _, adapter, entry in claims.values():
        if adapter not in table:
            continue
        key = f"{entry.layer}.{entry.rel}" if entry.layer else entry.rel
        if key in table[adapter]:
            raise RuntimeError(f"adapter {adapter!r}: two parameters share the canonical name {key!r}")
        table[adapter][key] = entry
    return table


def base_state(base: nn.Module, table: dict[str, dict[str, Entry]], params_only: bool = True) -> dict[str, torch.Tensor]:
    """The base model's own weights by canonical name (the tuner parameters in `table` left out)."""
    tuner_ids = {id(e.param) for entries in table.values() for e in entries.values()}
    items = base.named_parameters() if params_only else base.state_dict(keep_vars=True).items()
    out: dict[str, torch.Tensor] = {}
    for name, t in items:
        if id(t) in tuner_ids or any(_is_adapter_path(base, name)):
            continue
        out.setdefault(canonical_name(base, name), t)
    return out


def extra_state_params(params: dict[str, torch.Tensor], keys: list[str]) -> dict[str, torch.Tensor]:
    """The base weights whose canonical names fully match one of the `extra_state_keys` regexes."""
    found = {n: p for n, p in params.items() if any(re.fullmatch(k, n) for k in keys)}
    if not found:
        raise ValueError(f"extra_state_keys={keys!r} matched no parameter of the base model "
                         f"(regexes must match a whole name, e.g. {next(iter(params), 'head.weight')!r})")
    return found


def canonical_rel(layer: TunerLayer, adapter: str, rel: str) -> str:
    """Canonical form of a name a layer gives one of its adapter parameters: relative to the layer
    (`lora_A.default.weight`) or, for a tuner that names a copy's weights like the original's
    (Part), relative to the adapter's module."""
    roots = [layer] + [m for _, m in layer.adapter_modules(adapter) if isinstance(m, nn.Module)]
    for root in roots:
        module: nn.Module | None = root
        for part in rel.split(".")[:-1]:
            module = module._modules.get(part) if module is not None else None
        if module is not None:
            return canonical_name(root, rel)
    return rel


def _is_adapter_path(root: nn.Module, name: str) -> Iterator[bool]:
    """True for each point where `name` enters a tuner layer's adapter container (a tuner weight)."""
    module: nn.Module | None = root
    for part in name.split("."):
        yield isinstance(module, TunerLayer) and module.is_adapter_attribute(part)
        module = module._modules.get(part) if module is not None else None


def rename_attached(weights: dict, prefix: str, adapter_name: str) -> dict:
    """Keys of a module attached to the model as `<prefix><saved name>` (`restuning_x.…`), renamed to
    this adapter's `<prefix><adapter_name>.…`; other keys unchanged. For tuners whose child module is
    named after the adapter, when a checkpoint saved as `x` is loaded under another name."""
    out = {}
    for key, value in weights.items():
        head, _, rest = key.partition(".")
        out[f"{prefix}{adapter_name}.{rest}" if head.startswith(prefix) else key] = value
    return out
