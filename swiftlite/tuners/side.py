"""Side-Tuning: A Baseline for Network Adaptation via Additive Side Networks
(Zhang et al., 2020, arXiv:1912.13503).

A frozen module B ("base") gets a small trainable side network S that sees the same input; their
outputs are blended with one learned scalar α::

    R(x) = σ(α) · B(x) + (1 − σ(α)) · S(x)          α = 0 at init, so σ(α) = ½

Only S and α train; gradients never have to flow through B's weights.

Not identity at init: with σ(0) = ½ the tuned module outputs ½·B(x) + ½·S(x) right after injection
(the paper's and ms-swift's choice), and even a zero side network would halve B(x). Not mergeable:
S is a separate non-linear network (an MLP or a conv net) applied to the input, and there is no
weight of B into which its output could be folded; the side branch stays at inference.

Side networks (`side_module_name`):
  "mlp"   Linear(d_in → dim) → GELU → Linear(dim → dim), on the last axis (tokens or vectors);
  "fcn4"  ms-swift's 4-layer conv net: image (B, C, H, W) with H, W >= 15 → pooled vector (B, dim);
  "conv"  Conv3×3(d_in → dim) → GroupNorm → ReLU → Conv3×3(dim → dim), keeps (H, W) (CNN / U-Net features).
ms-swift's "alexnet" needs torchvision's downloaded ImageNet weights, which swiftlite does not fetch.

Structure and checkpoints as in ms-swift: adapter `<name>` is the submodule `side_<name>` of the target
(a `SideModule` holding `alpha` and `side_net`), with ms-swift's layer names inside the side network
("mlp": `fc1`, `act`, `fc2`; "fcn4": `conv1`..`conv4`, `fc`), so checkpoint keys such as
`<target>.side_<name>.side_net.fc1.weight` and `<target>.side_<name>.alpha` are ms-swift's.

Differences from the paper: the paper initialises S from the base or by distillation and can
anneal α on a schedule; here S starts random and α is learned (as in ms-swift). `side_in_dim` is a
swiftlite addition for modules whose input and output sizes differ.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Index, PositiveInt, Target
from ..core.tuner import check_output_position, feature_width, forward_arguments, probe_outputs, said_by
from ..core.modules import apply_to_hidden, innermost_base_layer

SIDE_NETWORKS = ("mlp", "fcn4", "conv")


@dataclass
class SideConfig(SwiftConfig):
    """Field names and defaults follow ms-swift's `SideConfig`; `side_in_dim` is swiftlite's."""

    swift_type: str = field(default="SIDE")
    dim: PositiveInt | None = None  # required: size of the target's output (its last axis, or channels for "conv")
    target_modules: Target = None  # the frozen modules B to put a side network beside (regex or list)
    side_module_name: str = "fcn4"  # "mlp", "fcn4" or "conv" (see module docstring); ms-swift's default
    source_hidden_pos: Index | str = 0  # where the input x sits in the call: int = positional, str = keyword
    target_hidden_pos: Index | str = 0  # which output to blend when B returns a tuple / dict: int index or str key
    side_in_dim: PositiveInt | None = None  # input size of S; None: dim ("mlp", "conv") or 3 image channels ("fcn4")

    _invalid_examples: ClassVar[dict] = {"dim": 0, "side_module_name": "resnet", "source_hidden_pos": 1.5}

    def validate(self) -> None:
        self._require(isinstance(self.dim, int) and self.dim > 0, "dim",
                      f"must be the positive output size of the target module, got {self.dim!r}")
        self._require(self.target_modules is not None, "target_modules",
                      "is required, e.g. r'model\\.layers\\.\\d+' or ['mlp']")
        if self.side_module_name == "alexnet":
            self._require(False, "side_module_name", "'alexnet' needs downloaded torchvision ImageNet weights, "
                                                     f"which swiftlite does not fetch; use one of {SIDE_NETWORKS}")
        self._require(self.side_module_name in SIDE_NETWORKS, "side_module_name",
                      f"must be one of {SIDE_NETWORKS}, got {self.side_module_name!r}")
        for name in ("source_hidden_pos", "target_hidden_pos"):
            pos = getattr(self, name)
            self._require(isinstance(pos, (int, str)) and not isinstance(pos, bool), name,
                          f"must be an int (positional index) or a str (keyword / key name), got {pos!r}")
        self._require(self.side_in_dim is None or (isinstance(self.side_in_dim, int) and self.side_in_dim > 0),
                      "side_in_dim", f"must be None or a positive int, got {self.side_in_dim!r}")


class FCN4(nn.Module):
    """Four conv blocks (3×3, GroupNorm, ReLU), global average pool, linear: (B, C, H, W) -> (B, dim).
    Layer names as in ms-swift's `FCN4` (`conv1`..`conv4`, `fc`)."""

    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()

        def block(c_in: int, c_out: int, stride: int, padding: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=padding, bias=False),
                                 nn.GroupNorm(2, c_out), nn.ReLU())

        self.conv1 = block(in_channels, 16, 1, 1)
        self.conv2 = block(16, 16, 2, 0)
        self.conv3 = block(16, 32, 2, 0)
        self.conv4 = block(32, 64, 1, 0)
        self.fc = nn.Linear(64, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv4(self.conv3(self.conv2(self.conv1(x)))).mean(dim=(2, 3))  # (B, 64)
        return self.fc(h)  # (B, dim)


class Mlp(nn.Module):
    """fc2(GELU(fc1(x))) on the last axis (layer names as in ms-swift's `Mlp`)."""

    def __init__(self, d_in: int, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def build_side_network(config: SideConfig) -> nn.Module:
    dim, name = config.dim, config.side_module_name
    if name == "mlp":
        return Mlp(config.side_in_dim or dim, dim)
    if name == "fcn4":
        return FCN4(config.side_in_dim or 3, dim)
    d_in = config.side_in_dim or dim  # "conv"
    return nn.Sequential(nn.Conv2d(d_in, dim, 3, padding=1), nn.GroupNorm(1, dim), nn.ReLU(), nn.Conv2d(dim, dim, 3, padding=1))


class SideModule(nn.Module):
    """One adapter: the side network S and the blend weight α (names as in ms-swift's `SideModule`)."""

    def __init__(self, config: SideConfig) -> None:
        super().__init__()
        self.side_net = build_side_network(config)
        self.alpha = nn.Parameter(torch.zeros(()))  # α = 0: σ(α) = ½

    def forward(self, x: torch.Tensor, b_x: torch.Tensor) -> torch.Tensor:
        s_x = self.side_net(x)
        if s_x.shape != b_x.shape:
            raise ValueError(f"SideConfig.dim / side_module_name: the side network maps {tuple(x.shape)} to "
                             f"{tuple(s_x.shape)} but the target output has shape {tuple(b_x.shape)}; pick the "
                             f"side network and dim (and side_in_dim) that produce that shape")
        a = torch.sigmoid(self.alpha)
        # R(x) = σ(α) · B(x) + (1 − σ(α)) · S(x)
        return a * b_x + (1 - a) * s_x


class SideLayer(TunerLayer):
    """Blends the frozen module's output with a side network's: σ(α)·B(x) + (1 − σ(α))·S(x)."""

    adapter_prefixes = ("side_",)  # adapter <name> is the child `side_<name>`, as in ms-swift

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.positions: dict[str, tuple[Any, Any]] = {}  # adapter -> (source_hidden_pos, target_hidden_pos)

    def add_adapter(self, adapter_name: str, config: SideConfig) -> None:
        device, dtype = self._base_device_dtype()
        self.add_adapter_module("side_", adapter_name, SideModule(config).to(device=device, dtype=dtype))
        self.positions[adapter_name] = (config.source_hidden_pos, config.target_hidden_pos)

    def side(self, adapter_name: str) -> SideModule:
        """The side network and α of `adapter_name` (the child `side_<name>`)."""
        return self._modules["side_" + adapter_name]

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.positions.pop(adapter_name, None)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.base_layer(*args, **kwargs)
        for name in self.active_adapters:
            source, target = self.positions[name]
            x = _get_input(args, kwargs, source)
            out = apply_to_hidden(out, target, functools.partial(self.side(name), x))
        return out


def _get_input(args: tuple, kwargs: dict, source: int | str) -> torch.Tensor:
    if isinstance(source, int) and source < len(args):
        return args[source]
    if isinstance(source, str) and source in kwargs:
        return kwargs[source]
    raise ValueError(f"SideConfig.source_hidden_pos={source!r}: the module was called with {len(args)} positional "
                     f"args and keywords {sorted(kwargs)}; point it at the input tensor")


@register_tuner
class SideTuner(Tuner):
    config_class = SideConfig
    layer_class = SideLayer
    identity_at_init = False  # σ(0) = ½ blends B(x) with a random S(x) from the start
    mergeable = False
    not_mergeable_reason = ("Side-Tuning adds a separate non-linear network on the module's input; its output "
                            "cannot be folded into the frozen module's weights.")

    @classmethod
    def check(cls, model: nn.Module, config: SideConfig, names: list[str]) -> None:
        for name in names:
            module = model.get_submodule(name)
            if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
                continue  # refused by `match` with its own message
            base = innermost_base_layer(module)
            arguments, var_keyword = forward_arguments(base)
            pos = config.source_hidden_pos
            if (isinstance(pos, int) and not -len(arguments) <= pos < len(arguments)) or (
                    isinstance(pos, str) and pos not in arguments and not var_keyword):
                raise ValueError(f"SideConfig.source_hidden_pos={pos!r} names no argument of {name!r} "
                                 f"({type(base).__name__}.forward takes {arguments}); point it at the input tensor")
            if config.side_module_name == "conv":
                continue  # channels, not the last axis: checked at the first forward
            out = feature_width(module, "out") if config.target_hidden_pos == 0 else None
            if out is not None and out[0] != config.dim:
                raise ValueError(f"SideConfig.dim={config.dim}: the output of {name!r} ({type(base).__name__}) has "
                                 f"{out[0]} features{said_by(out)}, and the side network must "
                                 f"produce the same; set dim={out[0]}")
            inp = feature_width(module, "in") if config.side_module_name == "mlp" and pos in (0, *arguments[:1]) else None
            d_in = config.side_in_dim or config.dim
            if inp is not None and inp[0] != d_in:
                field_name = "side_in_dim" if config.side_in_dim else "dim"
                raise ValueError(f"SideConfig.{field_name}={d_in}: the input of {name!r} ({type(base).__name__}) has "
                                 f"{inp[0]} features{said_by(inp)}, and the 'mlp' side network "
                                 f"reads side_in_dim (default: dim) features; set side_in_dim={inp[0]}")
        if config.target_hidden_pos != 0:
            outputs = probe_outputs(model, names) or {}  # which item is the hidden states: only a run can say
            for name, output in outputs.items():
                check_output_position("SideConfig", "target_hidden_pos", config.target_hidden_pos, name,
                                      model.get_submodule(name), output)

    @classmethod
    def match(cls, model: nn.Module, config: SideConfig) -> list[str]:
        found = super().match(model, config)
        containers = [n for n in found if isinstance(model.get_submodule(n), (nn.ModuleList, nn.ModuleDict))]
        if containers:
            raise ValueError(f"SideConfig.target_modules matched {containers[:3]}, containers without a forward; "
                             f"target the blocks inside them, e.g. r'{containers[0]}\\.\\d+'")
        return found
