"""The small tuners inside one Res-Tuning-Bypass block (see `restuning.py` for the method).

A bypass block i computes::

    x_i = aux_i( lateral_i(s_i) + vertical_i(x_{i-1}) )

and each of lateral / vertical / aux is a `ResTuner` holding one of:

    "res_adapter"        T(h) = h + scale · W_2 · GELU(W_1 · h + b_1) + b_2     (the paper's Res-Adapter)
    "res_group_adapter"  the same MLP applied per channel group of (B, C, H, W) U-Net features
    "upsample"           nearest-neighbour resize to the next stem's (H, W), then an optional zero-init 3x3 conv
    "zero"               T(h) = 0  (drops the branch)
    None                 T(h) = h  (identity)

A sub-tuner config is one of those strings, or a one-key dict `{"res_adapter": {...options}}`.
Options (ms-swift's names): res_adapter `adapter_length` (int, or a list indexed by block, default 32),
`adapter_weight` (None, "gate", "scale", "scale_channel" or "scalar_<float>"); res_group_adapter `head`
(default 4), `scale_factor` (hidden width multiplier, default 2), `dim` (must equal the block's dim),
`adapter_weight`. `adapter_type` is accepted and ignored, as in ms-swift.

A block's three configs come from one `tuner_cfg` entry (`block_cfgs`): a string gives lateral = vertical =
that string (aux "upsample" after every block but the last when `use_upsample`); a dict names them
`{"lateral_cfg": ..., "vertical_cfg": ..., "aux_cfg": ...}` (a missing key: identity); None: "res_adapter".

Module and parameter names are ms-swift's (`lateral_tuner.tuner.ln1.weight`, `aux_tuner.tuner.conv.weight`,
`...tuner.scaling`), so checkpoints load unchanged either way.
"""
from __future__ import annotations

import math
import re
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

SUB_TUNERS = ("res_adapter", "res_group_adapter", "upsample", "zero")
OPTIONS = {  # the options each sub-tuner understands
    "res_adapter": {"adapter_length", "adapter_weight", "adapter_type"},
    "res_group_adapter": {"head", "scale_factor", "dim", "adapter_weight", "adapter_type"},
    "upsample": set(),
    "zero": None,  # anything: its options are never read
}
ADAPTER_WEIGHTS = ("gate", "scale", "scale_channel")  # plus "scalar_<float>"
BLOCK_KEYS = ("lateral_cfg", "vertical_cfg", "aux_cfg")  # a dict tuner_cfg for one block


def parse_sub_cfg(cfg: Any, where: str) -> tuple[str | None, dict]:
    """(kind, options) of one sub-tuner config; raises ValueError naming `where` when it is malformed."""
    if cfg is None:
        return None, {}
    if isinstance(cfg, str):
        if cfg not in SUB_TUNERS:
            raise ValueError(f"{where}: {cfg!r} is not a sub-tuner; use one of {list(SUB_TUNERS)} or None (identity)")
        return cfg, {}
    if isinstance(cfg, dict) and len(cfg) == 1 and next(iter(cfg)) in SUB_TUNERS:
        kind, options = next(iter(cfg.items()))
        if OPTIONS[kind] is None:
            return kind, {}
        options = {} if options is None else options
        if not isinstance(options, dict) or not set(options) <= OPTIONS[kind]:
            raise ValueError(f"{where}: the options of {kind!r} must be a dict with keys among "
                             f"{sorted(OPTIONS[kind])}, got {options!r}")
        weight = options.get("adapter_weight")
        if weight is not None and weight not in ADAPTER_WEIGHTS and not _scalar_weight(weight):
            raise ValueError(f"{where}: adapter_weight={weight!r} is unknown; use None, one of "
                             f"{list(ADAPTER_WEIGHTS)} or 'scalar_<number>' (ms-swift's 'scale_kv*' do nothing)")
        for key in ("head", "scale_factor", "dim"):
            if key in options and not (isinstance(options[key], int) and options[key] > 0):
                raise ValueError(f"{where}: {key} must be a positive int, got {options[key]!r}")
        length = options.get("adapter_length", 32)
        lengths = length if isinstance(length, list) else [length]
        if not lengths or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in lengths):
            raise ValueError(f"{where}: adapter_length must be a positive int or a list of them (one per block), "
                             f"got {length!r}")
        return kind, options
    raise ValueError(f"{where}: expected None, one of {list(SUB_TUNERS)} or a one-key dict such as "
                     f"{{'res_adapter': {{'adapter_length': 16}}}}, got {cfg!r}")


def block_cfgs(item: Any, use_upsample: bool, last_block: bool) -> tuple:
    """(lateral, vertical, aux) sub-tuner configs of one block from its tuner_cfg entry."""
    where = f"got {item!r}"
    if item is None:
        item = "res_adapter"  # the paper's Res-Adapter (ms-swift crashes here)
    if isinstance(item, str):
        if item not in ("res_adapter", "res_group_adapter"):
            raise ValueError(f"{where}: a string tuner_cfg must be 'res_adapter' or 'res_group_adapter' "
                             f"(or a dict {{'lateral_cfg': ..., 'vertical_cfg': ..., 'aux_cfg': ...}})")
        aux = "upsample" if use_upsample and not last_block else None
        cfgs = (item, item, aux)
    elif isinstance(item, dict):
        unknown = sorted(set(item) - set(BLOCK_KEYS))
        if unknown:
            raise ValueError(f"{where}: a dict tuner_cfg takes the keys {list(BLOCK_KEYS)}, got {unknown}; "
                             f"e.g. {{'lateral_cfg': 'res_adapter', 'vertical_cfg': 'res_adapter'}}")
        cfgs = tuple(item.get(k) for k in BLOCK_KEYS)
    else:
        raise ValueError(f"{where}; expected None, a string, a dict or a list of those (one per stem)")
    for key, cfg in zip(BLOCK_KEYS, cfgs):
        kind, _ = parse_sub_cfg(cfg, f"{where} {key}")
        if (kind == "upsample") != (key == "aux_cfg" and kind is not None):
            raise ValueError(f"{where} {key}: {kind!r} does not fit there; aux_cfg takes 'upsample' or None, "
                             f"lateral_cfg / vertical_cfg any other sub-tuner")
    return cfgs


def _scalar_weight(weight: Any) -> float | None:
    """'scalar_0.5' -> 0.5 (ms-swift's fixed-scale option), else None."""
    match = re.fullmatch(r"scalar_(.+)", weight) if isinstance(weight, str) else None
    try:
        return float(match.group(1)) if match else None
    except ValueError:
        return None


class _Weighted(nn.Module):
    """The optional `adapter_weight` scaling of an adapter's branch, as a child named `scaling`."""

    def _init_scaling(self, dim: int, weight: str | None) -> None:
        self.adapter_weight = weight
        self.scalar = _scalar_weight(weight)
        if weight == "gate":  # per-sample gate: mean over tokens of σ(w·x + b)
            self.scaling = nn.Linear(dim, 1)
        elif weight == "scale":
            self.scaling = nn.Parameter(torch.ones(1))
        elif weight == "scale_channel":
            self.scaling = nn.Parameter(torch.ones(dim))

    def _scale(self, x_adapter: torch.Tensor) -> torch.Tensor:  # x_adapter: (B, N, C)
        if self.adapter_weight == "gate":
            return x_adapter * torch.sigmoid(self.scaling(x_adapter)).mean(dim=1).view(-1, 1, 1)
        if self.adapter_weight in ("scale", "scale_channel"):
            return x_adapter * self.scaling
        return x_adapter * self.scalar if self.scalar is not None else x_adapter


class ResAdapter(_Weighted):
    """Res-Adapter: h + scale · W_2 · GELU(W_1 · h + b_1) + b_2 on the last axis ((B, C, H, W) is read as (B, HW, C))."""

    def __init__(self, dim: int, adapter_length: int, zero_last: bool, adapter_weight: str | None) -> None:
        super().__init__()
        self.ln1 = nn.Linear(dim, adapter_length)  # W_1
        self.activate = nn.GELU()
        self.ln2 = nn.Linear(adapter_length, dim)  # W_2
        nn.init.xavier_uniform_(self.ln1.weight)
        nn.init.normal_(self.ln1.bias, std=1e-6)
        if zero_last:
            nn.init.zeros_(self.ln2.weight)
            nn.init.zeros_(self.ln2.bias)
        else:
            nn.init.xavier_uniform_(self.ln2.weight)
            nn.init.normal_(self.ln2.bias, std=1e-6)
        self._init_scaling(dim, adapter_weight)

    def branch(self, h: torch.Tensor) -> torch.Tensor:
        """scale · W_2 · GELU(W_1 · h + b_1) + b_2 alone (U-Tuning's parallel Res-Adapter), in h's shape."""
        tokens = rearrange(h, "b c hh ww -> b (hh ww) c") if h.dim() == 4 else h  # (B, N, C)
        # scale · W_2 · GELU(W_1 · h + b_1) + b_2
        x_adapter = self._scale(self.ln2(self.activate(self.ln1(tokens))))
        if h.dim() == 4:
            x_adapter = rearrange(x_adapter, "b (hh ww) c -> b c hh ww", hh=h.shape[2])
        return x_adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.to(self.ln1.weight.dtype)
        # T(h) = h + scale · W_2 · GELU(W_1 · h + b_1) + b_2
        return (h + self.branch(h)).to(x.dtype)


class ResGroupAdapter(_Weighted):
    """Res-Adapter on (B, C, H, W) features, channels split into `head` groups that share one MLP."""

    def __init__(self, dim: int, head: int, scale_factor: int, zero_last: bool, adapter_weight: str | None) -> None:
        super().__init__()
        if dim % head:
            raise ValueError(f"ResTuningConfig.tuner_cfg: res_group_adapter needs dim ({dim}) divisible by head ({head})")
        self.head = head
        group = dim // head
        self.ln1 = nn.Linear(group, group * scale_factor)
        self.ln2 = nn.Linear(group * scale_factor, group)
        self.activate = nn.GELU()
        for layer in (self.ln1, self.ln2):  # ms-swift's init: kaiming-uniform weights, N(0, 1) biases
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5))
            nn.init.normal_(layer.bias)
        if zero_last:
            nn.init.zeros_(self.ln2.weight)
            nn.init.zeros_(self.ln2.bias)
        self._init_scaling(dim, adapter_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"res_group_adapter needs (B, C, H, W) features, got shape {tuple(x.shape)}; "
                             f"use 'res_adapter' for token features")
        h = x.to(self.ln1.weight.dtype)
        groups = rearrange(h, "b (c g) hh ww -> (b g) (hh ww) c", g=self.head)  # channel = c * head + g
        # W_2 · GELU(W_1 · h_g + b_1) + b_2 for each channel group h_g, then scaled
        x_adapter = rearrange(self.ln2(self.activate(self.ln1(groups))), "(b g) n c -> b n (c g)", g=self.head)
        x_adapter = rearrange(self._scale(x_adapter), "b (hh ww) c -> b c hh ww", hh=h.shape[2])
        # T(h) = h + scale · (W_2 · GELU(W_1 · h + b_1) + b_2), per group
        return (h + x_adapter).to(x.dtype)


class Upsample(nn.Module):
    """Nearest-neighbour resize to `target_size` (×2 when None), then a zero-init 3x3 conv if `out_channels`."""

    def __init__(self, channels: int, out_channels: int | None) -> None:
        super().__init__()
        self.channels = channels
        if out_channels:
            self.conv = nn.Conv2d(channels, out_channels, 3, padding=1)
            nn.init.zeros_(self.conv.weight)
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor, target_size: torch.Size | None = None) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"upsample expects (B, {self.channels}, H, W) features, got shape {tuple(x.shape)}")
        if target_size is None:
            x = F.interpolate(x.float(), scale_factor=2, mode="nearest").type_as(x)
        else:
            x = F.interpolate(x.float(), size=tuple(target_size), mode="nearest").type_as(x)
        if not hasattr(self, "conv"):
            return x
        return self.conv(x.to(self.conv.weight.dtype)).to(x.dtype)


class ResTuner(nn.Module):
    """One branch of a bypass block: holds its sub-tuner as the child `tuner` (ms-swift's structure)."""

    def __init__(self, cfg: Any, dim: int, layer_num: int, depth: int, zero_init_last: bool,
                 upsample_out_channels: int | None, where: str) -> None:
        super().__init__()
        kind, options = parse_sub_cfg(cfg, where)
        self.kind = kind
        zero_last = zero_init_last and layer_num == depth - 1  # only the last block's W_2 starts at 0
        if kind == "res_adapter":
            length = options.get("adapter_length", 32)
            if isinstance(length, list):
                if len(length) <= layer_num:
                    raise ValueError(f"{where}: adapter_length lists {len(length)} widths, one per block, "
                                     f"but there are {depth} blocks")
                length = length[layer_num]
            self.tuner = ResAdapter(dim, length, zero_last, options.get("adapter_weight"))
        elif kind == "res_group_adapter":
            if options.get("dim", dim) != dim:
                raise ValueError(f"{where}: res_group_adapter dim={options['dim']} must equal the block's dims "
                                 f"entry ({dim}), since its output is added to its input")
            self.tuner = ResGroupAdapter(dim, options.get("head", 4), options.get("scale_factor", 2), zero_last,
                                         options.get("adapter_weight"))
        elif kind == "upsample":
            self.tuner = Upsample(dim, upsample_out_channels)
        else:
            self.tuner = nn.Identity()  # None: identity; "zero": the branch is dropped in forward

    def forward(self, x: torch.Tensor, target_size: torch.Size | None = None) -> torch.Tensor | float:
        if self.kind == "zero":
            return 0.0
        return self.tuner(x, target_size) if self.kind == "upsample" else self.tuner(x)


class ResTunerBypassBlock(nn.Module):
    """x_i = aux_i( lateral_i(s_i) + vertical_i(x_{i-1}) ); `aux_tuner` exists only when configured."""

    def __init__(self, lateral_cfg: Any, vertical_cfg: Any, aux_cfg: Any, dim: int, layer_num: int, depth: int,
                 zero_init_last: bool, upsample_out_channels: int | None) -> None:
        super().__init__()
        where = f"ResTuningConfig.tuner_cfg (block {layer_num})"
        common = dict(dim=dim, layer_num=layer_num, depth=depth, zero_init_last=zero_init_last,
                      upsample_out_channels=upsample_out_channels)
        self.lateral_tuner = ResTuner(lateral_cfg, where=f"{where} lateral_cfg", **common)
        self.vertical_tuner = ResTuner(vertical_cfg, where=f"{where} vertical_cfg", **common)
        if aux_cfg:
            self.aux_tuner = ResTuner(aux_cfg, where=f"{where} aux_cfg", **common)

    def aux(self, x: torch.Tensor, target_size: torch.Size | None) -> torch.Tensor:
        """aux_i: the configured aux tuner (an upsampler to `target_size`), else the identity."""
        return self.aux_tuner(x, target_size) if hasattr(self, "aux_tuner") else x

    def forward(self, s_i: torch.Tensor, x_prev: torch.Tensor, target_size: torch.Size | None) -> torch.Tensor:
        # x_i = aux_i( lateral_i(s_i) + vertical_i(x_{i-1}) )
        return self.aux(self.lateral_tuner(s_i) + self.vertical_tuner(x_prev), target_size)
