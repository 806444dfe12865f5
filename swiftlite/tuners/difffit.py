"""DiffFit: Unlocking Transferability of Large Diffusion Models via Simple Parameter-Efficient
Fine-Tuning (Xie et al., 2023, arXiv:2304.06648).

DiffFit trains the bias terms and a new learned scale γ (initialised to 1) on each residual branch of
every block, and here by default the normalisation layers too (`train_norm=False` keeps exactly the
abstract's "bias terms and scaling factors"); the rest of the network stays frozen. With a branch
`f(x) = W x + b` ending in an output projection::

    x ← x + γ · f(x)        γ = 1 at init                         (branches in `scale_modules`)
    h = W x + (b + Δb)      Δb = 0 at init                        (every layer with a bias)
    y = (g + Δg) ⊙ x̂ + (β + Δβ)     Δg = Δβ = 0 at init           (every norm layer)

so at injection the model is unchanged. Everything folds into the frozen weights: the bias and norm
deltas add to b, g, β, and γ scales the branch's output projection, `W ← γ W`, `b ← γ (b + Δb)`.
Merging is exact; unmerging restores the pre-merge tensors.

Which layers are the branches' output projections depends on the model (the paper's DiT: the attention
`proj` and the MLP `fc2`); name them in `scale_modules`, e.g. ["attention.o_proj", "mlp.fc2"] on ViT,
["to_out.0", "ff.net.2", "conv2"] on a diffusers U-Net.

Differences from the paper: there is no official code; γ here is one scalar per branch (a per-channel
vector would merge the same way). The paper's DiT also has an adaLN modulation MLP and tunes its
biases; here that is "every layer with a bias" under `target_modules`. Biases are deltas (the base bias
stays frozen) so the method fits the adapter API; a layer without a bias gets no Δb.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch.func import functional_call

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Target
from ..core.layer import check_finite
from ..core.modules import innermost_base_layer, is_transformers_conv1d, with_transformers_conv1d
from ..core.targeting import match_modules, replace_module
from .bitfit import _is_rms_norm

_NORMS = (nn.LayerNorm, nn.GroupNorm)
_CHANNEL_FIRST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm)  # channels on axis 1, else the last axis


def _layer_types() -> tuple[type, ...]:
    return with_transformers_conv1d((nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, *_NORMS))


@dataclass
class DiffFitConfig(SwiftConfig):
    """swiftlite's own config (neither ms-swift nor PEFT has DiffFit)."""

    swift_type: str = field(default="DIFFFIT")
    scale_modules: Target = None  # the residual branches' output projections, where γ is added (required)
    target_modules: Target = None  # where biases and norms train; None: every biased Linear/Conv and every norm
    gamma_init: float = 1.0  # γ at injection (the paper: 1, so the model starts unchanged)
    train_bias: bool = True  # train Δb of every biased layer under target_modules
    train_norm: bool = True  # train Δg, Δβ of every norm layer under target_modules
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)

    _invalid_examples: ClassVar[dict] = {"scale_modules": None, "gamma_init": "one", "target_modules": 7}

    def validate(self) -> None:
        self._require(self.scale_modules is not None, "scale_modules",
                      "is required: the output projections of the residual branches, e.g. ['attention.o_proj', "
                      "'mlp.fc2'] (ViT) or ['to_out.0', 'ff.net.2', 'conv2'] (U-Net)")
        t = self.target_modules
        self._require(t is None or isinstance(t, str) or (isinstance(t, (list, tuple)) and all(isinstance(n, str) for n in t)),
                      "target_modules", f"expected None, a regex or a list of module names, got {t!r}")


class DiffFitLayer(TunerLayer):
    """One frozen layer with its DiffFit parts: Δb (biased layers), Δg/Δβ (norms), γ (branch outputs)."""

    adapter_attrs = ("difffit_bias", "difffit_weight", "difffit_gamma")
    mergeable = True
    keep_pre_merge = True  # unmerge restores W, b exactly (dividing by γ would not be)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        if isinstance(base_layer, TunerLayer):
            raise ValueError("DiffFitConfig: this layer is already wrapped by another tuner; add DiffFit first")
        self.difffit_bias = nn.ParameterDict()
        self.difffit_weight = nn.ParameterDict()
        self.difffit_gamma = nn.ParameterDict()
        self.channel_axis = 1 if isinstance(base_layer, _CHANNEL_FIRST) else -1

    @property
    def is_norm(self) -> bool:
        return isinstance(self.base_layer, _NORMS) or _is_rms_norm(self.base_layer)

    def add_adapter(self, adapter_name: str, config: DiffFitConfig, *, bias: bool, norm: bool, gamma: bool) -> None:
        base = self.base_layer
        if bias and isinstance(getattr(base, "bias", None), nn.Parameter):
            self.difffit_bias[adapter_name] = nn.Parameter(torch.zeros_like(base.bias))  # Δb = 0
        if norm and self.is_norm and isinstance(getattr(base, "weight", None), nn.Parameter):
            self.difffit_weight[adapter_name] = nn.Parameter(torch.zeros_like(base.weight))  # Δg = 0
        if gamma:
            device, dtype = self._base_device_dtype()
            self.difffit_gamma[adapter_name] = nn.Parameter(torch.full((1,), config.gamma_init, device=device, dtype=dtype))

    def _on_channels(self, delta: torch.Tensor, ndim: int) -> torch.Tensor:
        """Broadcast a per-channel delta onto the output's channel axis."""
        return delta if self.channel_axis == -1 else delta.view(-1, *([1] * (ndim - 2)))  # (C, 1, ..., 1)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        active = self.active_adapters
        d_weight = [self.difffit_weight[n] for n in active if n in self.difffit_weight]
        if d_weight:
            # y = (g + Δg) ⊙ x̂ + β : the frozen norm run with its weight g + Δg
            h = functional_call(self.base_layer, {"weight": self.base_layer.weight + sum(d_weight)}, args, kwargs)
        else:
            h = self.base_layer(*args, **kwargs)
        for name in active:  # adapter by adapter, so merging them in order is exact
            if name in self.difffit_bias:
                # h = W x + (b + Δb)
                h = h + self._on_channels(self.difffit_bias[name], h.dim())
            if name in self.difffit_gamma:
                # x ← x + γ · f(x): this layer ends the branch f, so its output is scaled
                h = self.difffit_gamma[name] * h
        return h

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        base = self.base_layer
        weight = base.weight.detach().clone()
        bias = base.bias.detach().clone() if isinstance(getattr(base, "bias", None), nn.Parameter) else None
        if adapter_name in self.difffit_weight:
            weight += self.difffit_weight[adapter_name].detach()  # g ← g + Δg
        if adapter_name in self.difffit_bias:
            bias += self.difffit_bias[adapter_name].detach()  # b ← b + Δb
        if adapter_name in self.difffit_gamma:
            gamma = self.difffit_gamma[adapter_name].detach()
            weight = weight * gamma  # W ← γ W (γ is a scalar: the same for Linear, Conv and Conv1D layouts)
            bias = bias * gamma if bias is not None else None  # b ← γ (b + Δb)
        if safe_merge:
            check_finite(weight, f"DiffFit adapter {adapter_name!r}")
            if bias is not None:
                check_finite(bias, f"DiffFit adapter {adapter_name!r}")
        base.weight.data = weight
        if bias is not None:
            base.bias.data = bias


@register_tuner
class DiffFitTuner(Tuner):
    """Wraps every biased layer, every norm layer (under target_modules) and every scale module."""

    config_class = DiffFitConfig
    layer_class = DiffFitLayer
    mergeable = True

    @classmethod
    def match(cls, model: nn.Module, config: DiffFitConfig) -> list[str]:
        name = type(config).__name__
        scaled = match_modules(model, config.scale_modules, types=_layer_types(), field_name="scale_modules",
                               config_name=name)
        target = r".+" if config.target_modules is None else config.target_modules  # None: every layer
        found = match_modules(model, target, config_name=name)
        kept = []
        for n in found:
            base = innermost_base_layer(model.get_submodule(n))
            is_norm = isinstance(base, _NORMS) or _is_rms_norm(base)
            has_bias = isinstance(base, _layer_types()) and isinstance(getattr(base, "bias", None), nn.Parameter)
            if (config.train_norm and is_norm) or (config.train_bias and has_bias):
                kept.append(n)
        return list(dict.fromkeys(scaled + kept))

    @classmethod
    def inject(cls, model: nn.Module, config: DiffFitConfig, adapter_name: str) -> None:
        scaled = set(match_modules(model, config.scale_modules, types=_layer_types(), field_name="scale_modules",
                                   config_name=type(config).__name__))
        for name in cls.match(model, config):
            module = model.get_submodule(name)
            layer = module if isinstance(module, DiffFitLayer) else DiffFitLayer(module)
            layer.add_adapter(adapter_name, config, bias=config.train_bias, norm=config.train_norm,
                              gamma=name in scaled)
            if layer is not module:
                replace_module(model, name, layer)
