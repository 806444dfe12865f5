"""Controllable SC-Tuner (CSC-Tuner) of SCEdit (Jiang et al., CVPR 2024, arXiv:2312.11392): the condition side.

A condition map (an edge map, an object mask, a depth-like map: (B, k, H, W)) becomes one feature c_j per
tuned skip x_j, and each condition m adds its own edit to the skip::

    skip_j' = skip_j + Σ_m α_m · (c_j^m + T_j^m(skip_j + c_j^m))      T(x) = W_up · GELU(W_down · x)

T_j^m is the SC-Tuner's MLP without its identity (`SCEAdapter.delta`), α_m the adapter's `tuner_scale`.
In swiftlite one condition is one adapter (its own condition encoder and tuners), so several conditions
are several active adapters on the same targets, each with its own scale (`scetuning_scale`), and their
edits are computed from the same skip and summed (not chained). Where c comes from:

* the built-in condition encoder (`SCETuningConfig(condition_channels=k)`): a cascade of 3×3 convs with
  SiLU; level 0 keeps the condition's resolution, each further level halves it with a stride-2 conv::

      level 0: k → d_0 → d_0,     level l: d_{l-1} → d_l (stride 2) → d_l     (every conv followed by SiLU)

  and one zero-initialised 1×1 conv per target (its *hint module*) maps the level of that skip's
  resolution to the skip's width: c_j = Z_j(level_{l(j)}), Z_j = 0 at init, so skip' = skip at injection.
  `condition_dims` gives d_0, d_1, ... (default the paper's 16, 32, 96, 256; the last is repeated when
  the U-Net has more levels). The level of each skip is read from the diffusers U-Net's structure
  (`unet_skip_levels`), so the condition must come at the U-Net input's resolution (the `sample`'s H×W).
  The encoder is the adapter's child `scecondition_<adapter>` of the model given to `prepare_model`
  (keys `scecondition_<adapter>.encoder.levels.<l>.<i>.weight`, `...encoder.hint_convs.<j>.weight`); it
  runs once per forward of that model (when the first target asks for its hint) on the condition set
  with `set_condition`; hooks on that model forget the hints at the start and end of each forward.
* ms-swift's `hint_modules`: modules of the user's own model, one per target and in the same order; the
  model runs them (they receive the condition) and each one's output is its target's c_j (a forward hook
  keeps it for the target). They stay the model's modules, as in ms-swift: the adapter neither saves nor
  unfreezes them (list their parameters in `prepare_model(..., extra_state_keys=[...])` to train and save
  them with the adapter).

Passing conditions (built-in encoder), keyed by adapter name, a (B, k, H, W) tensor each (a (B, H, W)
map gets its channel axis)::

    set_condition(model, {"edge": edges, "mask": masks})   # until changed; None clears
    with scetuning_condition(model, edge=edges):            # only inside the block
        images = pipe(prompts, guidance_scale=1.5)

A condition whose batch divides the U-Net's batch is tiled (`repeat`), so classifier-free guidance, which
runs cat([uncond, cond]), uses it for both halves. A condition belongs to the model (every thread sees it);
the hints computed from it are kept per thread and per forward. An adapter whose condition is not set (None) adds
`α · T(skip)` (c = 0): it is the plain SC-Tuner.

Differences from the paper / Scepter / ms-swift:
- The paper runs one encoder for SD's latent space (its three stride-2 convs bring a 512 px condition to
  the 64×64 latent); here level 0 is the U-Net input's resolution and the levels follow the skips.
  Hint convs are 1×1.
- ms-swift's controllable path crashes (its hint probe is a kwargs forward hook with the wrong arity) and
  its tuner ignores the hint; ms-swift also registers each hint module as the child `hint` of its target
  (duplicate parameter names). Here the hint reaches the tuner, and no module is registered twice.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Iterator, Mapping

import torch
import torch.nn as nn

from ..core import TunerLayer
from ..core.layer import HookedAdapter

PAPER_CONDITION_DIMS = (16, 32, 96, 256)  # the paper's cascade widths (3→16→16→32→32→96→96→256)


def unet_skip_levels(model: nn.Module) -> dict[str, int]:
    """{name of an up-block resnet: how many times the skip it reads was downsampled} for every diffusers
    U-Net in `model` (0: the U-Net input's resolution). The down blocks push conv_in's output (level 0),
    each resnet's output, and each downsampler's output (one level deeper); the up blocks pop them last-first."""
    levels: dict[str, int] = {}
    for prefix, unet in model.named_modules():
        down, up = getattr(unet, "down_blocks", None), getattr(unet, "up_blocks", None)
        if not isinstance(down, nn.ModuleList) or not isinstance(up, nn.ModuleList) or not hasattr(unet, "mid_block"):
            continue
        prefix = f"{prefix}." if prefix else ""
        stack, level = [0], 0  # conv_in's output
        for block in down:
            stack += [level] * len(block.resnets)
            if getattr(block, "downsamplers", None) is not None:
                level += 1
                stack.append(level)
        for j, block in enumerate(up):
            for i in range(len(block.resnets)):
                levels[f"{prefix}up_blocks.{j}.resnets.{i}"] = stack.pop()
    return levels


class ConditionEncoder(nn.Module):
    """Condition map (B, k, H, W) -> one hint c_j (B, dims[j], H / 2^levels[j], W / 2^levels[j]) per target."""

    def __init__(self, in_channels: int, level_dims: list[int], levels: list[int], dims: list[int]) -> None:
        super().__init__()
        self.levels_of_target = list(levels)
        blocks, previous = [], in_channels
        for level, d in enumerate(level_dims):
            stride = 1 if level == 0 else 2  # level l: 1/2^l of the condition's resolution
            blocks.append(nn.Sequential(nn.Conv2d(previous, d, 3, stride=stride, padding=1), nn.SiLU(),
                                        nn.Conv2d(d, d, 3, padding=1), nn.SiLU()))
            previous = d
        self.levels = nn.ModuleList(blocks)
        self.hint_convs = nn.ModuleList(nn.Conv2d(level_dims[level], dim, 1) for level, dim in zip(levels, dims))
        for conv in self.hint_convs:  # Z_j = 0: c_j = 0 at init
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, condition: torch.Tensor) -> list[torch.Tensor]:
        features, h = [], condition
        for block in self.levels:
            h = block(h)  # (B, d_l, H / 2^l, W / 2^l)
            features.append(h)
        # c_j = Z_j(level_{l(j)})
        return [conv(features[level]) for conv, level in zip(self.hint_convs, self.levels_of_target)]


def _as_map(condition: torch.Tensor, where: str) -> torch.Tensor:
    condition = torch.as_tensor(condition)
    if condition.dim() == 3:
        condition = condition[:, None]  # (B, H, W) -> (B, 1, H, W)
    if condition.dim() != 4:
        raise ValueError(f"{where}: a condition is a (B, k, H, W) or (B, H, W) tensor, got shape {tuple(condition.shape)}")
    return condition


class ConditionHints(HookedAdapter):
    """The built-in condition encoder of one CSC adapter (`scecondition_<adapter>`, a child of the model),
    the condition it was given and the hints it computed in the current forward."""

    weights_attribute = "encoder"

    def __init__(self, adapter_name: str, encoder: ConditionEncoder, in_channels: int) -> None:
        super().__init__(adapter_name)
        self.encoder = encoder
        self.in_channels = in_channels
        self.condition: torch.Tensor | None = None
        self._hints: dict[int, list[torch.Tensor]] = {}  # thread -> hints of this forward

    def clear_state(self) -> None:
        self._hints.clear()
        self.condition = None

    # ---- the hints ---------------------------------------------------------------------------------
    def attach(self, root: nn.Module) -> None:
        """Forget the hints at the start and at the end of every forward of `root` (one encoder run per forward)."""
        self.handles.append(root.register_forward_pre_hook(lambda module, args: self._forget()))
        self.handles.append(root.register_forward_hook(lambda module, args, output: self._forget()))

    def set_condition(self, condition: torch.Tensor | None) -> None:
        if condition is None:
            self.condition = None
            return
        condition = _as_map(condition, f"set_condition[{self.adapter_name!r}]")
        if condition.shape[1] != self.in_channels:
            raise ValueError(f"set_condition[{self.adapter_name!r}]: the condition has {condition.shape[1]} channels, "
                             f"but SCETuningConfig.condition_channels={self.in_channels}; give a (B, "
                             f"{self.in_channels}, H, W) map or set condition_channels to {condition.shape[1]}")
        self.condition = condition

    def _forget(self) -> None:
        self._hints.pop(threading.get_ident(), None)

    def hint(self, index: int, target: str) -> torch.Tensor | None:
        """c_j of target `index` in this forward; None when no condition is set (c = 0). The first target
        that asks runs the encoder on the condition; the others reuse its hints."""
        if self.condition is None:
            return None
        hints = self._hints.get(threading.get_ident())
        if hints is None:
            weight = self.encoder.hint_convs[0].weight
            hints = self._hints[threading.get_ident()] = self.encoder(self.condition.to(weight.device, weight.dtype))
        return hints[index]

    def extra_repr(self) -> str:
        return f"adapter={self.adapter_name!r}, condition_channels={self.in_channels}"


class HintProbe:
    """ms-swift's `hint_modules`: forward hooks keep each hint module's output for its target (per thread)."""

    def __init__(self, adapter_name: str, modules: list[tuple[str, nn.Module]]) -> None:
        self.adapter_name, self.names = adapter_name, [n for n, _ in modules]
        self._outputs: dict[int, dict[int, torch.Tensor]] = {}
        self.handles = [m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(modules)]
        self.layer: TunerLayer | None = None  # a target's layer: the probe keeps hints only while the adapter is active

    def _hook(self, index: int):
        def store(module: nn.Module, args: Any, output: Any) -> None:
            if self.layer is not None and self.adapter_name not in self.layer.active_adapters:
                return  # nobody will read it: keeping it would feed a later forward a stale hint
            out = output[0] if isinstance(output, (tuple, list)) else output
            self._outputs.setdefault(threading.get_ident(), {})[index] = out
        return store

    def hint(self, index: int, target: str) -> torch.Tensor:
        """The output of hint module `index` in this forward (used once)."""
        outputs = self._outputs.get(threading.get_ident(), {})
        if index not in outputs:
            raise RuntimeError(f"SCETuningConfig.hint_modules: {target!r} (adapter {self.adapter_name!r}) ran before "
                               f"its hint module {self.names[index]!r} in this forward; the model must run each hint "
                               f"module (on the condition) before the target it feeds")
        return outputs.pop(index)

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        self._outputs.clear()


def fit_hint(c: torch.Tensor, skip: torch.Tensor, adapter_name: str, target: str) -> torch.Tensor:
    """c as (B, C, H, W) of the skip: same size and width; a batch that divides the skip's is tiled (CFG)."""
    if c.shape[1:] != skip.shape[1:]:
        raise ValueError(f"CSC adapter {adapter_name!r}: the hint for {target!r} has shape {tuple(c.shape)}, the skip "
                         f"{tuple(skip.shape)}; give the condition at the U-Net input's resolution (the skips' H×W "
                         f"follow from it), or hint modules whose outputs have the skip's shape")
    if c.shape[0] != skip.shape[0]:
        if skip.shape[0] % c.shape[0]:
            raise ValueError(f"CSC adapter {adapter_name!r}: a condition batch of {c.shape[0]} does not divide the "
                             f"U-Net batch of {skip.shape[0]}; give one condition per sample (or one for all)")
        c = c.repeat(skip.shape[0] // c.shape[0], 1, 1, 1)  # (B', C, H, W) -> (B, C, H, W), as cat([x, x]) in CFG
    return c.to(skip.dtype)


def condition_encoders(model: nn.Module) -> dict[str, ConditionHints]:
    """{adapter name: its built-in condition encoder} in `model`."""
    return {m.adapter_name: m for m in model.modules() if isinstance(m, ConditionHints) and m.adapter_name is not None}


def set_condition(model: nn.Module, conditions: Mapping[str, torch.Tensor | None] | torch.Tensor | None) -> None:
    """Give CSC adapters their condition maps: {adapter name: (B, k, H, W) or (B, H, W) tensor, or None to
    clear}. A bare tensor (or None) goes to the only CSC adapter of the model."""
    encoders = condition_encoders(model)
    if not encoders:
        raise ValueError("set_condition: the model has no CSC adapter; add one with "
                         "SCETuningConfig(condition_channels=..., ...)")
    if conditions is None or isinstance(conditions, torch.Tensor):
        if len(encoders) != 1:
            raise ValueError(f"set_condition: the model has CSC adapters {sorted(encoders)}; pass "
                             f"{{adapter name: condition}}")
        conditions = {next(iter(encoders)): conditions}
    unknown = sorted(set(conditions) - set(encoders))
    if unknown:
        raise ValueError(f"set_condition: no CSC adapter named {unknown}; the model has {sorted(encoders)}")
    for name, condition in conditions.items():
        encoders[name].set_condition(condition)


@contextlib.contextmanager
def scetuning_condition(model: nn.Module, conditions: Mapping[str, torch.Tensor | None] | torch.Tensor | None = None,
                        **by_name: torch.Tensor | None) -> Iterator[None]:
    """Run a block with these conditions (as `set_condition`; keywords are adapter names); the previous
    conditions come back on exit."""
    encoders = condition_encoders(model)
    saved = {name: enc.condition for name, enc in encoders.items()}
    if conditions is not None and by_name:
        raise ValueError("scetuning_condition: pass a dict / tensor or keywords, not both")
    try:
        set_condition(model, by_name if by_name else conditions)
        yield
    finally:
        for name, condition in saved.items():
            encoders[name].condition = condition


def hint_target_levels(model: nn.Module, names: list[str]) -> list[int]:
    """The skip level of each target for the built-in encoder; ValueError naming the field when a target
    is not an up-block resnet of a diffusers U-Net."""
    levels = unet_skip_levels(model)
    outside = [n for n in names if n not in levels]
    if outside:
        raise ValueError(f"SCETuningConfig.condition_channels: the built-in condition encoder feeds the skips of a "
                         f"diffusers U-Net (decoder mode, up-block resnets), but {outside} are not such targets; "
                         f"select up_blocks.<j>.resnets.<i>, or give your own hint_modules")
    return [levels[n] for n in names]


def level_widths(condition_dims: list[int] | None, n_levels: int) -> list[int]:
    """d_0..d_{L-1}: the given widths (the paper's by default), the last one repeated for deeper levels."""
    dims = list(condition_dims or PAPER_CONDITION_DIMS)
    return (dims + [dims[-1]] * n_levels)[:n_levels]

