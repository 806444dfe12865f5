"""SC-Tuner: SCEdit: Efficient and Controllable Image Diffusion Generation via Skip Connection Editing
(Jiang et al., CVPR 2024, arXiv:2312.11392).

A U-Net's decoder reads the encoder's features through skip connections. SCEdit edits only those:
each skip feature x_j (B, C_j, H, W) goes through a small per-pixel MLP over its channels before
the decoder uses it::

    O_j = x_j + W_up · GELU(W_down · x_j)       W_down ∈ R^{m×C_j}, W_up ∈ R^{C_j×m}, m = C_j · down_ratio

W_up (and its bias) start at zero, so O_j = x_j at injection. At inference `tuner_scale` s blends the
edit in or out: `x_j + s · (O_j − x_j)` (s = 1: the trained tuner, s = 0: the base model); the context
manager `scetuning_scale(model, s)` sets it for a block of code. Gradients stop at the skips: the
tuners' inputs come from the frozen encoder, so backward never enters it.

Where the skip connections of diffusers' `UNet2DConditionModel` are: the down blocks return every
intermediate feature (conv_in's output, each resnet/attention output, each downsampler output); the
model stacks them and hands each up block the last `len(resnets)` of them as `res_hidden_states_tuple`.
Inside the up block's loop, right before each resnet, the last one is popped and concatenated on the
channel axis: `resnet(cat([hidden, skip], dim=1), temb)`. So a skip connection has no module of its own;
it first appears as the trailing channels of an up-block resnet's input, one skip per resnet.
`tuner_mode="decoder"` hooks exactly there: it splits the target's first input into [hidden, skip] with
sizes [C − dim, dim] (C read from the tensor, dim the tuner's width), tunes the skip and concatenates
again. That is the same as tuning the skip before the concatenation, touches no diffusers code and no
local variable, and depends only on the public module tree and the channel order of the cat (a test
checks both against diffusers' real skips). FreeU, if enabled, acts before the cat, so it sees the
untuned skip. For SD-1.5: `target_modules=r"up_blocks\\.\\d+\\.resnets\\.\\d+"`, 12 targets,
dims = [1280]*5 + [640]*3 + [320]*4.

`tuner_mode="encoder"` (and its alias "identity") tunes the target's output instead, e.g. the down
blocks' resnets, i.e. where the skips are produced (for a tuple output, its first item).

Controllable SC-Tuner (CSC-Tuner; details and the condition encoder in `scetuning_condition.py`): each
adapter with a hint adds `α · (c_j + T_j(x_j + c_j))` to its skip (α = tuner_scale), where c_j comes from
ms-swift's `hint_modules` (modules of the model, one per target: their output is c_j) or from swiftlite's
built-in condition encoder (`condition_channels=k`, `condition_dims`), fed with
`set_condition(model, {adapter: map})` or `with scetuning_condition(model, adapter=map): ...`.

Checkpoints as in ms-swift: adapter `<name>` on target `<t>` is the child `<t>.scetuner_<name>`
(an `SCETunerModule`) whose `tuner_op` is the `SCEAdapter` with `ln1` (W_down) and `ln2` (W_up), so the
keys are `<t>.scetuner_<name>.tuner_op.ln1.weight` etc.; the code reads them as `w_down` / `w_up`. A target that is a ModuleList means its last
element, as in ms-swift (`up_blocks.0.resnets` -> `up_blocks.0.resnets.1`).

Differences from ms-swift / the paper:
- ms-swift splits the decoder input with `torch.split(x, C - dim)` (a chunk size), which breaks when a
  skip is wider than the hidden part (more than two chunks); here the sizes are [C − dim, dim], and
  `check` compares each `dims` entry with the skip width diffusers' U-Net really feeds that resnet
  (ms-swift checks nothing). On other models only dims < the input's channels is checked: at prepare
  time when the target states `in_channels`, else at the first forward.
- ms-swift's encoder mode returns only the first item of a tuple output; here the other items stay.
- `tuner_scale` (default 1.0, exact ms-swift behaviour) is swiftlite's; ms-swift ignores the field.
- Several adapters on one target nest like ms-swift's patched forwards (the latest outermost): decoder-
  mode adapters tune the skip latest-first, encoder-mode adapters tune the output oldest-first (the
  fixture scetuning_two checks the decoder order against ms-swift). Nested adapters do not commute, and
  ms-swift reloads a folder's adapters in `os.listdir` order (swiftlite: sorted by name): pass
  `adapter_name=[...]` in the saved order.
- CSC adapters on one target are summed from the same skip (the paper's Σ), after the plain SC adapters
  (which nest, as above).
- A target given as a list entry may also be a dotted suffix (swiftlite's matching); ms-swift needs
  full names. Not mergeable: the tuner is a non-linear MLP on a skip feature.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Optional, Union

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import PositiveFloat, PositiveInt, Target
from ..core.layer import tuner_layers
from ..core.modules import hidden_of, innermost_base_layer, with_hidden
from ..core.params import rename_attached
from ..core.targeting import match_modules, replace_module
from ..core.tuner import forward_arguments
from ..kernels import triton_enabled
from .scetuning_condition import (ConditionEncoder, ConditionHints, HintProbe, fit_hint, hint_target_levels,
                                  level_widths)

TUNER_MODES = ("decoder", "encoder", "identity")  # identity: ms-swift's alias of encoder
TUNER_OPS = ("SCEAdapter",)


@dataclass
class SCETuningConfig(SwiftConfig):
    """Field names and defaults follow ms-swift's `SCETuningConfig` (plus swiftlite's `tuner_scale`)."""

    swift_type: str = field(default="SCETuning")
    dims: Union[PositiveInt, list[PositiveInt], None] = None  # channels C_j of each tuned feature (one int: all)
    target_modules: Target = None  # regex (full match) or list; a ModuleList means its last element
    hint_modules: Target = None  # CSC: modules of the model, one per target (same order); each output is c_j
    tuner_mode: str = "decoder"  # decoder: the skip part of the input; encoder / identity: the output
    tuner_op: str = "SCEAdapter"  # the only tuner op ms-swift has
    down_ratio: PositiveFloat = 1.0  # hidden width m = int(C_j * down_ratio) (the paper: 1.0)
    tuner_scale: float = 1.0  # s in x + s·(O − x) at inference; 1.0 is the trained tuner (CSC: α_m)
    condition_channels: Optional[PositiveInt] = None  # CSC: channels k of the condition map -> built-in encoder
    condition_dims: Optional[list[PositiveInt]] = None  # CSC encoder widths d_0, d_1, ... (None: 16, 32, 96, 256)

    _invalid_examples: ClassVar[dict] = {"dims": 0, "target_modules": None, "tuner_mode": "middle",
                                         "tuner_op": "LoRA", "down_ratio": 0.0, "condition_channels": 0,
                                         "condition_dims": [0]}

    def validate(self) -> None:
        self._require(self.dims is not None and self.dims != [], "dims",
                      "is required: the channel count of each tuned feature, e.g. 320 or [1280, 1280, 640, ...]")
        self._require(self.target_modules is not None, "target_modules",
                      "is required, e.g. r'up_blocks\\.\\d+\\.resnets\\.\\d+' (the decoder resnets that read the skips)")
        self._require(self.tuner_mode in TUNER_MODES, "tuner_mode",
                      f"must be one of {list(TUNER_MODES)}, got {self.tuner_mode!r}")
        self._require(self.tuner_op in TUNER_OPS, "tuner_op", f"must be one of {list(TUNER_OPS)}, got {self.tuner_op!r}")
        self._require(self.hint_modules is None or self.condition_channels is None, "hint_modules",
                      "and condition_channels both give the CSC-Tuner its hints; use hint_modules for your own "
                      "modules, or condition_channels for the built-in condition encoder")
        self._require(self.condition_dims is None or self.condition_channels is not None, "condition_dims",
                      "sets the widths of the built-in condition encoder; set condition_channels too (or drop it)")
        self._require(self.condition_channels is None or self.tuner_mode == "decoder", "condition_channels",
                      f"the built-in condition encoder feeds the skips (tuner_mode='decoder'), got {self.tuner_mode!r}")
        for dim in self.dims if isinstance(self.dims, list) else [self.dims]:
            self._require(int(dim * self.down_ratio) >= 1, "down_ratio",
                          f"int(dims * down_ratio) must be at least 1, got int({dim} * {self.down_ratio})")


class SCEAdapter(nn.Module):
    """`x + W_up · GELU(W_down · x)` over the channels of x, per pixel.

    W_down and W_up are stored under ms-swift's names `ln1` and `ln2` (the checkpoint keys
    `tuner_op.ln1.weight`, ...); the code reads them as `w_down` and `w_up`."""

    def __init__(self, dim: int, adapter_length: int, device=None, dtype=None) -> None:
        super().__init__()
        self.dim = dim
        self.ln1 = nn.Linear(dim, adapter_length, device=device, dtype=dtype)  # W_down (PyTorch's default init)
        self.activate = nn.GELU()
        self.ln2 = nn.Linear(adapter_length, dim, device=device, dtype=dtype)  # W_up
        nn.init.zeros_(self.w_up.weight)  # W_up = 0 and its bias = 0: O = x at init
        nn.init.zeros_(self.w_up.bias)

    @property
    def w_down(self) -> nn.Linear:
        return self.ln1

    @property
    def w_up(self) -> nn.Linear:
        return self.ln2

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """W_up · GELU(W_down · x) on the channel axis (axis 1 of a (B, C, H, W) map, else the last axis),
        computed in the adapter's dtype and returned in x's."""
        h = x.to(self.w_down.weight.dtype)
        h = h.permute(0, 2, 3, 1) if x.dim() == 4 else h  # (B, C, H, W) -> (B, H, W, C)
        # W_up · GELU(W_down · x)
        d = self.w_up(self.activate(self.w_down(h)))
        return (d.permute(0, 3, 1, 2) if x.dim() == 4 else d).to(x.dtype)  # -> (B, C, H, W)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        if triton_enabled():  # opt-in fused kernel; imported here only because it imports Triton
            from ..kernels.bottleneck import bottleneck_module_forward

            return bottleneck_module_forward(self, x, scale)
        # O = x + W_up · GELU(W_down · x); at inference x + s · (O − x)
        return x + scale * self.delta(x)


class SCETunerModule(nn.Module):
    """One adapter's tuner on one skip (ms-swift's `SCETunerModule`: the op sits in `tuner_op`)."""

    def __init__(self, dim: int, tuner_length: int, device=None, dtype=None) -> None:
        super().__init__()
        self.dim = dim
        self.tuner_op = SCEAdapter(dim, tuner_length, device, dtype)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """T(x) = W_up · GELU(W_down · x), after checking x's channel count."""
        if x.shape[1 if x.dim() == 4 else -1] != self.dim:
            raise ValueError(f"SCETuningConfig.dims: this tuner was built for {self.dim} channels and got a feature "
                             f"of shape {tuple(x.shape)}; set dims to the feature's channel count")
        return self.tuner_op.delta(x)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        # O = x + W_up · GELU(W_down · x); at inference x + s · (O − x)
        return x + scale * self.delta(x)

    def controlled(self, x: torch.Tensor, c: torch.Tensor | None, scale: float = 1.0) -> torch.Tensor:
        """CSC-Tuner: the edit α · (c + T(x + c)) this condition adds to the skip x (c = None: α · T(x))."""
        if c is None:
            return scale * self.delta(x)
        # α_m · (c_m + T_m(skip + c_m)),  T(x) = W_up · GELU(W_down · x)
        return scale * (c + self.delta(x + c))


class SCETuningLayer(TunerLayer):
    """Wraps a target; tunes the skip part of its first input (decoder mode) or its output (encoder mode)."""

    adapter_prefixes = ("scetuner_",)  # adapter <name> is the child `scetuner_<name>`, as in ms-swift

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.tuner_mode: dict[str, str] = {}
        self.tuner_scale: dict[str, float] = {}
        # CSC adapters: adapter -> (hint source, index of this target, target name); the source is the
        # built-in encoder (a module elsewhere in the model) or a HintProbe, so it is not a child here
        self.hints: dict[str, tuple[Any, int, str]] = {}

    def add_adapter(self, adapter_name: str, config: SCETuningConfig, dim: int,
                    hint: tuple[Any, int, str] | None = None) -> None:
        device, dtype = self._base_device_dtype()
        module = SCETunerModule(dim, int(dim * config.down_ratio), device, dtype)
        self.add_adapter_module("scetuner_", adapter_name, module)
        self.tuner_mode[adapter_name] = config.tuner_mode
        self.tuner_scale[adapter_name] = config.tuner_scale
        if hint is not None:
            self.hints[adapter_name] = hint

    def tuner(self, adapter_name: str) -> SCETunerModule:
        return self._modules["scetuner_" + adapter_name]

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.tuner_mode.pop(adapter_name, None)
        self.tuner_scale.pop(adapter_name, None)
        source = self.hints.pop(adapter_name, (None,))[0]
        if isinstance(source, HintProbe):
            source.remove()  # idempotent: every target of the adapter shares the probe

    def _split(self, x: torch.Tensor, adapter_name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden, skip) of a decoder input x = cat([hidden, skip], dim=1): skip is its last `dims` channels."""
        dim = self.tuner(adapter_name).dim
        channels = x.shape[1] if x.dim() >= 2 else 0
        if channels <= dim:
            raise ValueError(f"SCETuningConfig.dims: decoder mode tunes the last {dim} channels of the input "
                             f"[hidden, skip], but {type(innermost_base_layer(self)).__name__} got shape "
                             f"{tuple(x.shape)}; set dims to the skip's width (less than {channels})")
        hidden, skip = x.split([channels - dim, dim], dim=1)  # (B, C−dim, ...), (B, dim, ...)
        return hidden, skip

    def _controlled(self, skip: torch.Tensor, names: list[str]) -> torch.Tensor:
        """CSC: skip + Σ_m α_m · (c_m + T_m(skip + c_m)) over the CSC adapters `names`, all from the same skip."""
        out = skip
        for name in names:
            source, index, target = self.hints[name]
            c = source.hint(index, target)  # (B', C, H, W), or None: no condition (c = 0)
            if c is not None:
                c = fit_hint(c, skip, name, target)
            out = out + self.tuner(name).controlled(skip, c, self.tuner_scale[name])
        return out

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        active = self.active_adapters
        decoder = [n for n in active if self.tuner_mode[n] == "decoder" and n not in self.hints]
        controlled = [n for n in active if self.tuner_mode[n] == "decoder" and n in self.hints]
        if decoder or controlled:
            args, kwargs = list(args), dict(kwargs)
            if args:
                x = args[0]
            else:  # called by keyword: the first argument of the wrapped forward
                first = forward_arguments(self.base_layer)[0][0]
                x = kwargs[first]
            for name in reversed(decoder):  # latest adapter outermost, as ms-swift's nested forwards
                hidden, x_j = self._split(x, name)
                # O_j = x_j + s · W_up · GELU(W_down · x_j)
                o_j = x_j + self.tuner_scale[name] * self.tuner(name).delta(x_j)
                x = torch.cat([hidden, o_j], dim=1)
            if controlled:
                hidden, skip = self._split(x, controlled[0])
                x = torch.cat([hidden, self._controlled(skip, controlled)], dim=1)
            if args:
                args[0] = x
            else:
                kwargs[first] = x
        out = self.base_layer(*args, **kwargs)
        encoder = [n for n in active if self.tuner_mode[n] != "decoder"]  # tune the output (a tuple's first item)
        for name in encoder:
            if name not in self.hints:
                x_j = hidden_of(out, 0)
                # O_j = x_j + s · W_up · GELU(W_down · x_j)
                o_j = x_j + self.tuner_scale[name] * self.tuner(name).delta(x_j)
                out = with_hidden(out, 0, o_j)
        controlled = [n for n in encoder if n in self.hints]
        if controlled:
            out = with_hidden(out, 0, self._controlled(hidden_of(out, 0), controlled))
        return out


@contextlib.contextmanager
def scetuning_scale(model: nn.Module, scale: float, adapter_name: str | None = None) -> Iterator[None]:
    """Run a block with tuner scale s (`x + s·(O − x)`) for `adapter_name` (None: every SC-Tuner adapter);
    the configured scales come back on exit."""
    saved = []
    for _, layer in tuner_layers(model):
        if isinstance(layer, SCETuningLayer):
            for name in ([adapter_name] if adapter_name is not None else list(layer.tuner_scale)):
                if name in layer.tuner_scale:
                    saved.append((layer, name, layer.tuner_scale[name]))
                    layer.tuner_scale[name] = float(scale)
    if not saved:
        raise ValueError(f"scetuning_scale: the model has no SC-Tuner adapter {adapter_name!r}" if adapter_name
                         else "scetuning_scale: the model has no SC-Tuner adapter")
    try:
        yield
    finally:
        for layer, name, old in saved:
            layer.tuner_scale[name] = old


# ---- where the skips are, statically (for `check`) --------------------------------------------------
def unet_skip_widths(model: nn.Module) -> dict[str, int]:
    """{name of an up-block resnet: channels of the skip concatenated onto its input} for every diffusers
    U-Net in `model` (a module with `up_blocks` of blocks with `resnets`, and a `mid_block`, e.g. the model
    itself or `unet` inside a pipeline module); {} when there is none.
    Resnet i of an up block reads [hidden, skip]: hidden comes from resnet i−1 (i > 0) or, for i = 0, from
    the previous up block (its last resnet; an upsampler keeps channels) or the mid block."""
    widths: dict[str, int] = {}
    for prefix, unet in model.named_modules():
        up_blocks, mid = getattr(unet, "up_blocks", None), getattr(unet, "mid_block", None)
        if not isinstance(up_blocks, nn.ModuleList) or not hasattr(mid, "resnets"):
            continue
        prefix = f"{prefix}." if prefix else ""
        hidden = innermost_base_layer(mid.resnets[-1]).out_channels
        for j, block in enumerate(up_blocks):
            for i, resnet in enumerate(block.resnets):
                resnet = innermost_base_layer(resnet)
                widths[f"{prefix}up_blocks.{j}.resnets.{i}"] = resnet.in_channels - hidden
                hidden = resnet.out_channels
    return widths


def _channels(module: nn.Module, side: str) -> int | None:
    """In/out channel count a diffusers resnet, a conv or a linear layer states; None when unknown."""
    module = innermost_base_layer(module)
    for attr in (("in_channels", "in_features") if side == "in" else ("out_channels", "out_features")):
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    return None


@register_tuner
class SCETuningTuner(Tuner):
    """Wraps each target (a ModuleList: its last element) in an `SCETuningLayer`, one `dims` entry each."""

    config_class = SCETuningConfig
    layer_class = SCETuningLayer
    not_mergeable_reason = "the SC-Tuner is a non-linear MLP on a skip feature; it has no weight to fold into"

    @classmethod
    def match(cls, model: nn.Module, config: SCETuningConfig) -> list[str]:
        names = match_modules(model, config.target_modules, config_name="SCETuningConfig")
        if isinstance(config.target_modules, list):  # ms-swift pairs dims with the list's order
            names = [n for t in config.target_modules for n in names if n == t or n.endswith("." + t)]
        resolved = []
        for name in names:
            while isinstance(model.get_submodule(name), nn.ModuleList):  # ms-swift: a ModuleList means its last item
                name = f"{name}.{len(model.get_submodule(name)) - 1}"
            resolved.append(name)
        repeated = sorted({n for n in resolved if resolved.count(n) > 1})
        if repeated:
            raise ValueError(f"SCETuningConfig.target_modules={config.target_modules!r} selects {repeated} more than "
                             f"once (a ModuleList stands for its last item); select each target once")
        return resolved

    @classmethod
    def dims_for(cls, config: SCETuningConfig, names: list[str]) -> list[int]:
        if isinstance(config.dims, int):
            return [config.dims] * len(names)
        if len(config.dims) != len(names):
            raise ValueError(f"SCETuningConfig.dims: {len(config.dims)} entries for {len(names)} targets {names}; "
                             f"give one channel count per target, in this order, or one int for all")
        return list(config.dims)

    @classmethod
    def check(cls, model: nn.Module, config: SCETuningConfig, names: list[str]) -> None:
        skips = unet_skip_widths(model) if config.tuner_mode == "decoder" else {}
        for k, (name, dim) in enumerate(zip(names, cls.dims_for(config, names))):
            at = f"SCETuningConfig.dims[{k}]={dim}" if isinstance(config.dims, list) else f"SCETuningConfig.dims={dim}"
            module = model.get_submodule(name)
            if config.tuner_mode == "decoder":
                if name in skips and skips[name] != dim:
                    raise ValueError(f"{at}: the skip connection concatenated onto the input of {name!r} has "
                                     f"{skips[name]} channels; set it to {skips[name]} (skip widths of the targets: "
                                     f"{[skips.get(n) for n in names]})")
                width = _channels(module, "in")
                if width is not None and dim >= width:
                    raise ValueError(f"{at}: decoder mode tunes the last dims channels of the input of {name!r}, "
                                     f"which has {width} channels in all ([hidden, skip]); dims must be the skip's width")
            else:
                width = _channels(module, "out")
                if width is not None and width != dim:
                    raise ValueError(f"{at}: the output of {name!r} ({type(innermost_base_layer(module)).__name__}) "
                                     f"has {width} channels; set it to {width}")
        if config.hint_modules is not None:
            cls.hint_names(model, config, names)
        if config.condition_channels is not None:
            hint_target_levels(model, names)
            if isinstance(model, nn.Sequential):
                raise ValueError("SCETuningConfig.condition_channels: the model is an nn.Sequential, which would run "
                                 "the added child 'scecondition_<name>' as a layer; wrap it in an nn.Module")

    @classmethod
    def hint_names(cls, model: nn.Module, config: SCETuningConfig, names: list[str]) -> list[str]:
        """The hint module of each target (ms-swift: a list pairs with the targets in order, a regex in model order)."""
        hints = match_modules(model, config.hint_modules, config_name="SCETuningConfig", field_name="hint_modules")
        if isinstance(config.hint_modules, list):
            hints = [n for t in config.hint_modules for n in hints if n == t or n.endswith("." + t)]
        if len(hints) != len(names):
            raise ValueError(f"SCETuningConfig.hint_modules={config.hint_modules!r} selects {len(hints)} modules for "
                             f"{len(names)} targets; give one hint module per target, in the targets' order")
        for hint in hints:
            if isinstance(model.get_submodule(hint), (nn.ModuleList, nn.ModuleDict)):
                raise ValueError(f"SCETuningConfig.hint_modules: {hint!r} is a container that is never called; "
                                 f"select the module that computes the hint")
        return hints

    @classmethod
    def inject(cls, model: nn.Module, config: SCETuningConfig, adapter_name: str) -> None:
        names = cls.match(model, config)
        dims = cls.dims_for(config, names)
        source: Any = None
        if config.hint_modules is not None:  # ms-swift: the model's own modules give the hints
            source = HintProbe(adapter_name, [(n, model.get_submodule(n)) for n in cls.hint_names(model, config, names)])
        elif config.condition_channels is not None:  # the built-in condition encoder, a child of the model
            attribute = f"scecondition_{adapter_name}"
            if hasattr(model, attribute):
                raise ValueError(f"adapter_name={adapter_name!r}: the model already has an attribute {attribute!r}")
            levels = hint_target_levels(model, names)
            encoder = ConditionEncoder(config.condition_channels, level_widths(config.condition_dims, max(levels) + 1),
                                       levels, dims)
            param = next(model.parameters(), None)
            source = ConditionHints(adapter_name, encoder.to(param.device) if param is not None else encoder,
                                    config.condition_channels)
            source.attach(model)
            model.add_module(attribute, source)
        for j, (name, dim) in enumerate(zip(names, dims)):
            module = model.get_submodule(name)
            hint = (source, j, name) if source is not None else None
            if isinstance(module, SCETuningLayer):
                module.add_adapter(adapter_name, config, dim, hint)
            else:
                layer = SCETuningLayer(module)
                layer.add_adapter(adapter_name, config, dim, hint)
                replace_module(model, name, layer)
        if isinstance(source, HintProbe):
            source.layer = model.get_submodule(names[0])

    @classmethod
    def from_saved_state(cls, model: nn.Module, config: SCETuningConfig, weights: dict[str, Any],
                         adapter_name: str) -> dict[str, Any]:
        """The built-in encoder of a checkpoint saved as adapter `x` is `scecondition_x.…`: load it as this adapter's."""
        return rename_attached(weights, "scecondition_", adapter_name)
