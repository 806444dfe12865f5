"""A trainable branch beside a frozen operation, the injection U-Tuning and Res-Attn share.

Res-Tuning (Jiang et al., NeurIPS 2023, arXiv:2310.19859) writes a tuner as a branch *beside* a frozen
operation OP (an attention module, an MLP, a whole block) instead of inside it::

    x' = OP(x) + T(x)          OP frozen,  T a Res-Tuner (trained)

x is OP's input (B, T, d) (a (B, C, H, W) feature map is read as (B, HW, C) tokens), OP(x) its output
(B, T, d'). `ParallelLayer` wraps OP and adds each active adapter's T_a(x); `inject_branches` wraps the
selected operations (once, innermost first) and adds one adapter's branches; `widths` reads d and d' from
OP's weights. A branch is any module with `residual(x, op, mask) -> T(x)` (x as (B, T, d) tokens, `op`
the frozen operation, `mask` the attention mask OP received): the Res-Tuners of `utuning.py` and
`resattn.ResAttn`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn
from einops import rearrange

from ..core import TunerLayer
from ..core.modules import hidden_of, innermost_base_layer, with_hidden
from ..core.targeting import replace_module
from ..core.tuner import feature_width, forward_arguments, said_by


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
            _, input_pos, hidden_pos = self.branch_info[name]
            x = self.argument(args, kwargs, input_pos)
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"input_pos={input_pos!r}: {type(self.base_layer).__name__} received no tensor "
                                 f"there; name the argument that holds the hidden states")
            op_x, t_x = hidden_of(out, hidden_pos), self.run_branch(name, x, mask)
            self._check_shapes(op_x, t_x)
            # x' = OP(x) + T(x)
            out = with_hidden(out, hidden_pos, op_x + t_x.to(op_x.dtype))
        return out

    def run_branch(self, name: str, x: torch.Tensor, mask: Any) -> torch.Tensor:
        """T(x) in x's layout: (B, C, H, W) feature maps go through the branch as (B, HW, C) tokens."""
        h = rearrange(x, "b c hh ww -> b (hh ww) c") if x.dim() == 4 else x
        t = self.branch(name).residual(h, innermost_base_layer(self.base_layer), mask)
        return rearrange(t, "b (hh ww) c -> b c hh ww", hh=x.shape[2]) if x.dim() == 4 else t

    def _check_shapes(self, op_x: torch.Tensor, t_x: torch.Tensor) -> None:
        if op_x.shape != t_x.shape:
            raise ValueError(f"U-Tuning: {type(self.base_layer).__name__} maps its input to shape "
                             f"{tuple(op_x.shape)}, but the Res-Tuner gives {tuple(t_x.shape)}; x' = OP(x) + T(x) "
                             f"needs the same shape (set out_dim, input_pos or hidden_pos, or pick an operation that "
                             f"keeps the layout)")


# ---- the widths d, d' of an operation ----------------------------------------------------------------------
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


# ---- putting branches on a model -----------------------------------------------------------------------
# make_branch(kind, d, d', config, op, where) -> a zero-initialised branch, or ValueError naming `where`
MakeBranch = Callable[[str, int, int, Any, nn.Module, str], nn.Module]


def check_branches(model: nn.Module, config: Any, kinds: dict[str, str], make_branch: MakeBranch) -> None:
    """Raise, changing nothing, when an operation of `kinds` ({name: branch kind}) cannot take its branch."""
    build_branches(model, config, kinds, make_branch)


def build_branches(model: nn.Module, config: Any, kinds: dict[str, str],
                   make_branch: MakeBranch) -> dict[str, tuple[str, nn.Module]]:
    """{operation name: (kind, branch)}, each branch sized from the operation's widths."""
    config_name = type(config).__name__
    branches = {}
    for name, kind in kinds.items():
        dim, out_dim = widths(model, name, config, config_name)
        op = innermost_base_layer(model.get_submodule(name))
        branches[name] = kind, make_branch(kind, dim, out_dim, config, op, f"{config_name}.tuner ({name!r})")
    return branches


def inject_branches(model: nn.Module, config: Any, kinds: dict[str, str], make_branch: MakeBranch,
                    adapter_name: str, prefix: str) -> None:
    """Wrap each operation in a ParallelLayer (once) and add this adapter's branch to it."""
    branches = build_branches(model, config, kinds, make_branch)  # all first: a failure changes nothing
    # innermost operations first: wrapping a block before its attention would hide the attention's parent
    for name in sorted(branches, key=lambda n: n.count("."), reverse=True):
        module = model.get_submodule(name)
        layer = module if isinstance(module, ParallelLayer) else ParallelLayer(module)
        kind, branch = branches[name]
        layer.add_branch(adapter_name, prefix, kind, branch, config.input_pos, config.hidden_pos)
        if layer is not module:
            replace_module(model, name, layer)
