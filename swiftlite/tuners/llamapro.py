"""LLaMA Pro: Progressive LLaMA with Block Expansion (Wu et al., 2024, arXiv:2401.02415).

The L decoder blocks are split into N groups; after each group, P copies of the group's last block
are inserted (P·N = `num_new_blocks`, N = `num_groups`). Each copy φ' starts with its attention
output projection and its MLP down projection set to zero, so with the residual stream::

    h' = h + Attn'(norm(h)) = h            (W_o = 0)
    h'' = h' + W_down · MLP'(norm(h')) = h'  (W_down = 0)

a new block is the identity at the start ("identity block"), and only the new blocks train:
the model grows in depth and learns new knowledge while the original blocks stay untouched.
This needs pre-norm residual blocks (LLaMA, Qwen2, GPT-2, ViT with the right `zero_modules`);
a post-norm block (BERT: `LayerNorm(h + W_o·…)`) is not the identity with W_o = 0.

How it is attached here: the last block of each group is wrapped in a `LLaMAProLayer` that runs the
original block and then the active adapters' new blocks. Switching the adapter off skips them
(= the base model); deleting it removes them. The KV cache gets one slot per new block after the
original ones (`layer_idx` = L, L+1, ...) and `config.num_hidden_layers` (and `layer_types`, if
the model has it) grows accordingly, so `generate()` with a cache works; both are restored when
the adapter is deleted.

Not mergeable: the new blocks are extra depth, not a change of existing weights; there is nothing
to fold them into (the expanded model simply keeps them; ms-swift does not merge LLaMA-Pro either).

Checkpoints as in ms-swift: ms-swift inserts the copies into a lengthened block list, so a new block
is saved under its index there (2 groups of 2 layers: [L0, N0, L1, N1] -> `model.layers.1.*`,
`model.layers.3.*`). Here the copies sit inside the wrapped block (`model.layers.1.llamapro_block.
default.0.*` in `state_dict()`), so adapters stay independent; `to_saved_state` / `from_saved_state`
translate between the two at save / load time (older swiftlite checkpoints with nested keys load too).

Differences from ms-swift: `module_list` / `zero_modules` are swiftlite additions that let it run on
any stack of residual blocks (ms-swift looks them up from `model_type`). With `num_groups` <
`num_new_blocks`, swiftlite adds num_new_blocks / num_groups copies per group, as the paper; ms-swift
4.6 adds one per group (the checkpoint keys of the extra copies follow the same lengthened-list rule).
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import ModuleNames, PositiveInt
from ..core.modules import apply_to_hidden, hidden_of, innermost_base_layer
from ..core.layer import canonical_name
from ..core.targeting import module_list_at, replace_module


@dataclass
class LLaMAProConfig(SwiftConfig):
    """Field names follow ms-swift's `LLaMAProConfig`; `module_list` and `zero_modules` are swiftlite's."""

    swift_type: str = field(default="LLAMAPRO")
    model_type: str | None = None  # informational (ms-swift uses it to find the blocks); None is fine
    num_new_blocks: PositiveInt | None = None  # required: how many blocks to add in all (the paper: 8 on LLaMA2-7B's 32)
    num_groups: PositiveInt | None = None  # groups the blocks are split into; None: num_new_blocks (one new block per group)
    module_list: str | None = None  # path of the ModuleList of blocks; None: found automatically (e.g. model.layers)
    zero_modules: ModuleNames = field(default_factory=lambda: ["o_proj", "down_proj"])  # zeroed in each copy -> identity block

    _invalid_examples: ClassVar[dict] = {"num_new_blocks": 0, "num_groups": 3}

    def validate(self) -> None:
        self._require(isinstance(self.num_new_blocks, int) and self.num_new_blocks > 0, "num_new_blocks",
                      f"must be a positive int (the number of blocks to add), got {self.num_new_blocks!r}")
        groups = self.num_new_blocks if self.num_groups is None else self.num_groups
        self._require(isinstance(groups, int) and groups > 0 and self.num_new_blocks % groups == 0, "num_groups",
                      f"must be a positive divisor of num_new_blocks={self.num_new_blocks} (each group gets the "
                      f"same number of new blocks), got {self.num_groups!r}")
        self._require(isinstance(self.zero_modules, (list, tuple)) and len(self.zero_modules) > 0
                      and all(isinstance(n, str) for n in self.zero_modules), "zero_modules",
                      f"must be a non-empty list of module names inside a block, got {self.zero_modules!r}")

    @property
    def groups(self) -> int:
        return self.num_new_blocks if self.num_groups is None else self.num_groups


class LLaMAProLayer(TunerLayer):
    """Runs the original block, then each active adapter's new (identity-initialised) blocks."""

    adapter_attrs = ("llamapro_block",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.llamapro_block = nn.ModuleDict()  # adapter -> ModuleList of new blocks
        self.__dict__["_expansion"] = None  # shared, unregistered: the stack and its original cache layout


    def add_adapter(self, adapter_name: str, config: LLaMAProConfig, copies: int = 1) -> None:
        blocks = nn.ModuleList(copy.deepcopy(self.base_layer) for _ in range(copies))
        for block in blocks:
            zeroed = [m for n, m in block.named_modules() if any(n == z or n.endswith("." + z) for z in config.zero_modules)]
            if not zeroed:
                raise ValueError(f"LLaMAProConfig.zero_modules={list(config.zero_modules)!r} matched nothing inside "
                                 f"{type(block).__name__}; name its attention output and MLP output projections")
            for m in zeroed:  # W_o = 0, W_down = 0  ->  the new block is the identity
                for p in m.parameters(recurse=False):
                    nn.init.zeros_(p)
        self.llamapro_block[adapter_name] = blocks

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        if self._expansion is not None:
            self._expansion.sync()  # give the cache slots back

    def new_blocks(self) -> list[nn.Module]:
        return [b for blocks in self.llamapro_block.values() for b in blocks]

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        out = self.base_layer(hidden_states, *args, **kwargs)
        for name in self.active_adapters:
            for block in self.llamapro_block[name]:
                # h'' = h' + W_down·MLP'(...) with W_down trained from 0 (older blocks return (h, ...))
                out = apply_to_hidden(out, 0, lambda h: hidden_of(block(h, *args, **kwargs), 0))
        return out


class _Expansion:
    """Shared bookkeeping of one expanded stack: KV-cache slots of the new blocks, config sizes."""

    def __init__(self, stack: nn.ModuleList, hf_config: Any) -> None:
        self.stack, self.hf_config = stack, hf_config
        self.num_original = len(stack)
        self.layer_types = list(getattr(hf_config, "layer_types", None) or []) or None

    def sync(self) -> None:
        """Number the new blocks' `layer_idx` L, L+1, ... in stack order and size the config to match."""
        extra_types: list[str] = []
        slot = self.num_original
        for i, module in enumerate(self.stack):
            if not isinstance(module, LLaMAProLayer):
                continue
            for block in module.new_blocks():
                for m in block.modules():
                    if hasattr(m, "layer_idx"):
                        m.layer_idx = slot
                slot += 1
                if self.layer_types:
                    extra_types.append(self.layer_types[i])
        if self.hf_config is not None and hasattr(self.hf_config, "num_hidden_layers"):
            # LlamaModel runs `layers[:num_hidden_layers]` (unaffected: the stack keeps its length) and
            # DynamicCache(config) makes num_hidden_layers cache slots (now one more per new block).
            self.hf_config.num_hidden_layers = slot
            if self.layer_types:
                self.hf_config.layer_types = self.layer_types + extra_types


def _find_stack(model: nn.Module, config: LLaMAProConfig) -> tuple[str, nn.ModuleList]:
    if config.module_list is not None:
        return config.module_list, module_list_at(model, config.module_list, "LLaMAProConfig.module_list")
    # The first ModuleList whose blocks contain every zero_modules name (LLaMA: o_proj and down_proj).
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            inner = [n for n, _ in innermost_base_layer(module[0]).named_modules()]
            if all(any(n == z or n.endswith("." + z) for n in inner) for z in config.zero_modules):
                return name, module
    raise ValueError(f"LLaMAProConfig.module_list=None: found no ModuleList of blocks containing "
                     f"{list(config.zero_modules)}; set module_list (e.g. 'model.layers') and zero_modules")


@register_tuner
class LLaMAProTuner(Tuner):
    config_class = LLaMAProConfig
    layer_class = LLaMAProLayer
    mergeable = False
    not_mergeable_reason = ("LLaMA-Pro adds new blocks (depth), not a change of existing weights, so there is "
                            "nothing to fold them into.")

    @classmethod
    def match(cls, model: nn.Module, config: LLaMAProConfig) -> list[str]:
        """The last block of each group: indices (g+1)·L/N − 1."""
        path, stack = _find_stack(model, config)
        if len(stack) % config.groups != 0:
            raise ValueError(f"LLaMAProConfig.num_groups={config.groups}: the model has {len(stack)} blocks, which "
                             f"do not split into {config.groups} equal groups; pick a divisor of {len(stack)}")
        stride = len(stack) // config.groups
        return [f"{path}.{i}" for i in range(stride - 1, len(stack), stride)]

    @classmethod
    def inject(cls, model: nn.Module, config: LLaMAProConfig, adapter_name: str) -> None:
        _, stack = _find_stack(model, config)
        names = cls.match(model, config)
        existing = [m for m in stack if isinstance(m, LLaMAProLayer) and m._expansion is not None]
        expansion = existing[0]._expansion if existing else _Expansion(stack, getattr(model, "config", None))
        copies = config.num_new_blocks // config.groups
        for name in names:
            module = model.get_submodule(name)
            if isinstance(module, LLaMAProLayer):
                module.add_adapter(adapter_name, config, copies=copies)
            else:
                layer = LLaMAProLayer(module)
                layer.add_adapter(adapter_name, config, copies=copies)  # may raise: then nothing was replaced
                layer.__dict__["_expansion"] = expansion
                replace_module(model, name, layer)
        expansion.sync()

    # ---- checkpoint keys: the new blocks at their indices in ms-swift's lengthened block list -------
    @classmethod
    def _saved_index(cls, model: nn.Module, config: LLaMAProConfig) -> tuple[str, dict[tuple[int, int], int]]:
        """(canonical path of the block list, {(block i it follows, copy c): index in the lengthened list})."""
        path, stack = _find_stack(model, config)
        stride, copies = len(stack) // config.groups, config.num_new_blocks // config.groups
        index = {}
        for g in range(config.groups):
            i = (g + 1) * stride - 1  # last block of group g
            for c in range(copies):
                index[(i, c)] = i + 1 + g * copies + c  # after the g·copies blocks inserted before it
        return canonical_name(model, path), index

    @classmethod
    def to_saved_state(cls, model: nn.Module, config: LLaMAProConfig, weights: dict[str, Any], adapter_name: str
                       ) -> dict[str, Any]:
        """`model.layers.1.llamapro_block.<adapter>.0.x` -> `model.layers.<index in the lengthened list>.x`."""
        path, index = cls._saved_index(model, config)
        nested = re.compile(rf"{re.escape(path)}\.(\d+)\.llamapro_block\.{re.escape(adapter_name)}\.(\d+)\.(.+)")
        out = {}
        for key, value in weights.items():
            found = nested.fullmatch(key)
            if found is None or (int(found[1]), int(found[2])) not in index:
                raise ValueError(f"LLaMA-Pro adapter {adapter_name!r}: weight {key!r} is not in a new block "
                                 f"{path}.<i>.llamapro_block.{adapter_name}.<copy>.*")
            out[f"{path}.{index[int(found[1]), int(found[2])]}.{found[3]}"] = value
        return out

    @classmethod
    def from_saved_state(cls, model: nn.Module, config: LLaMAProConfig, weights: dict[str, Any], adapter_name: str
                         ) -> dict[str, Any]:
        """Inverse of `to_saved_state`; keys already nested (older swiftlite checkpoints) pass unchanged."""
        path, index = cls._saved_index(model, config)
        block_of = {j: ic for ic, j in index.items()}
        flat = re.compile(rf"{re.escape(path)}\.(\d+)\.(.+)")
        out = {}
        for key, value in weights.items():
            found = flat.fullmatch(key)
            if found is None or ".llamapro_block." in key:
                out[key] = value  # not ms-swift's form: load_state_dict names it if it fits nothing
                continue
            if int(found[1]) not in block_of:
                raise ValueError(f"checkpoint key {key!r}: LLaMA-Pro (num_new_blocks={config.num_new_blocks}, "
                                 f"num_groups={config.groups}) puts its new blocks at {path}.<j> with j in "
                                 f"{sorted(block_of)} of the lengthened list; was it saved with another config?")
            i, c = block_of[int(found[1])]
            out[f"{path}.{i}.llamapro_block.{adapter_name}.{c}.{found[2]}"] = value
        return out
