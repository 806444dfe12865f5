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

How it is attached here: the last block of each group is wrapped in a `LLaMAProLayer` that owns the
adapter's new blocks (so adapters stay independent), and the block list itself (`model.model.layers`)
becomes an `ExpandedBlocks` list: iterating, indexing and `len()` see every block, each wrapped block
followed by its active adapters' new blocks, as in ms-swift's lengthened list (len ==
`config.num_hidden_layers`), and the model's own loop runs them. Switching the adapter off hides its
blocks (= the base model); deleting the last one gives the plain `nn.ModuleList` back. Every block's
`layer_idx` (its KV-cache slot) is its position in the list, and `config.num_hidden_layers` (and
`layer_types`, in list order, if the model has it) follow the list, so `generate()` with a cache
works; all are restored when the adapter is deactivated or deleted.

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
from ..core.modules import innermost_base_layer
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

    def set_adapter_active(self, adapter_name: str, active: bool) -> None:
        super().set_adapter_active(adapter_name, active)
        if self._expansion is not None:
            self._expansion.sync()  # the lengthened list changed: renumber the blocks, resize the config

    def new_blocks(self) -> list[nn.Module]:
        return [b for blocks in self.llamapro_block.values() for b in blocks]

    def active_new_blocks(self) -> list[nn.Module]:
        """The new blocks that run after this one: those of this thread's active adapters."""
        return [b for name in self.active_adapters for b in self.llamapro_block[name]]

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        # the original block; its new blocks follow it in the ExpandedBlocks list, run by the model's own loop:
        # h'' = h' + W_down·MLP'(norm(h')), each a full block whose W_o, W_down start at 0
        return self.base_layer(hidden_states, *args, **kwargs)


class ExpandedBlocks(nn.ModuleList):
    """A block list as ms-swift's expanded model holds it: each block, then its active new blocks.

    The registered modules (`state_dict`, `named_modules`, `.to()`) stay the original blocks (the new
    ones are registered inside their `LLaMAProLayer`); iterating, indexing and `len()` — what a model's
    forward loop uses — see the lengthened list."""

    def _blocks(self) -> list[nn.Module]:
        out = []
        for module in self._modules.values():
            out.append(module)
            if isinstance(module, LLaMAProLayer):
                out.extend(module.active_new_blocks())
        return out

    def __iter__(self):
        return iter(self._blocks())

    def __len__(self) -> int:
        return len(self._blocks())

    def __getitem__(self, idx: int | slice) -> Any:
        blocks = self._blocks()
        return nn.ModuleList(blocks[idx]) if isinstance(idx, slice) else blocks[idx]


def _originals(stack: nn.ModuleList) -> list[nn.Module]:
    """The registered blocks of a stack, without the new blocks `ExpandedBlocks` lists."""
    return list(stack._modules.values())  # a ModuleList's own registry (what its iteration reads)


class _Expansion:
    """Shared bookkeeping of one expanded stack: its list class, every block's KV-cache slot, config sizes."""

    def __init__(self, stack: nn.ModuleList, hf_config: Any) -> None:
        self.stack, self.hf_config = stack, hf_config
        self.num_original = len(_originals(stack))
        self.list_class = type(stack)
        self.expanded_class = ExpandedBlocks if self.list_class is nn.ModuleList else type(
            f"Expanded{self.list_class.__name__}", (ExpandedBlocks, self.list_class), {})  # a model's own list class
        self.layer_types = list(getattr(hf_config, "layer_types", None) or []) or None
        self.num_hidden_layers = getattr(hf_config, "num_hidden_layers", self.num_original)

    def sync(self) -> None:
        """Number every block by its position in the lengthened list (`layer_idx`, its KV-cache slot, as
        ms-swift numbers them) and size the config to match: `num_hidden_layers` == len(list), and
        `layer_types` in list order (a new block takes its source block's type). Called whenever an
        adapter is added, (de)activated or deleted; the numbering follows the calling thread's active
        adapters (LLaMA-Pro adapters active in one thread and not in another are not supported)."""
        originals = _originals(self.stack)
        types: list[str] = []
        position = 0
        for i, module in enumerate(originals):
            new = module.active_new_blocks() if isinstance(module, LLaMAProLayer) else []
            original = module.base_layer if isinstance(module, LLaMAProLayer) else module
            for block in [original] + new:
                for m in block.modules():
                    if hasattr(m, "layer_idx"):
                        m.layer_idx = position
                position += 1
                if self.layer_types:
                    types.append(self.layer_types[i])
        if self.hf_config is not None and hasattr(self.hf_config, "num_hidden_layers"):
            # LlamaModel runs `layers[:num_hidden_layers]`, and DynamicCache(config) makes that many slots
            self.hf_config.num_hidden_layers = self.num_hidden_layers + position - self.num_original
            if self.layer_types:
                self.hf_config.layer_types = types  # Qwen2 reads layer_types[i] for the i-th block of the list
        # the lengthened list while there are new blocks; the model's own list class once none is left
        has_new = any(isinstance(m, LLaMAProLayer) and m.new_blocks() for m in originals)
        self.stack.__class__ = self.expanded_class if has_new else self.list_class


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
        n = len(_originals(stack))
        if n % config.groups != 0:
            raise ValueError(f"LLaMAProConfig.num_groups={config.groups}: the model has {n} blocks, which "
                             f"do not split into {config.groups} equal groups; pick a divisor of {n}")
        stride = n // config.groups
        return [f"{path}.{i}" for i in range(stride - 1, n, stride)]

    @classmethod
    def inject(cls, model: nn.Module, config: LLaMAProConfig, adapter_name: str) -> None:
        _, stack = _find_stack(model, config)
        names = cls.match(model, config)
        existing = [m for m in _originals(stack) if isinstance(m, LLaMAProLayer) and m._expansion is not None]
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
        stride, copies = len(_originals(stack)) // config.groups, config.num_new_blocks // config.groups
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
