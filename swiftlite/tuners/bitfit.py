"""BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based Masked Language-models
(Ben Zaken et al., 2021, arXiv:2106.10199) — and LayerNorm tuning (Zhao et al., 2023,
"Tuning LayerNorm in Attention", arXiv:2312.11420).

BitFit trains only the bias terms. A frozen layer `h = W x + b` becomes::

    h = W x + (b + Δb)                 Δb ∈ R^{d_out}, Δb = 0 at init        (mode="bias")

LayerNorm tuning trains only the affine parameters of the normalisation layers::

    y = (γ + Δγ) ⊙ (x − μ)/σ + (β + Δβ)        Δγ = Δβ = 0 at init             (mode="norm")

(an RMSNorm, y = γ ⊙ x / rms(x), has no β: it gets Δγ only).

Each adapter owns its own deltas Δ (the base bias stays frozen), so `disable_adapter()` gives the
base model, several adapters can coexist, and merging is `b ← b + Δb` (exact, reversible).

Modules without a bias (LLaMA's projections, `bias=False` convolutions): a matched module gets a
new zero-initialised Δb added to its output, which is exactly "the same layer with a trainable
bias"; merging then creates the missing bias parameter in the base layer (and unmerge removes it).

Differences from the paper: the paper trains the existing biases in place; here they are deltas so
the method fits the adapter API. `target_modules=None` picks every supported layer that already has
a bias (BitFit's rule); a model with no biases at all (LLaMA) needs explicit targets.
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
from ..core.modules import innermost_base_layer, with_transformers_conv1d
from ..core.targeting import match_modules

_CHANNEL_FIRST = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.GroupNorm)  # channels on axis 1, else the last axis
_NORMS = (nn.LayerNorm, nn.GroupNorm)


def _is_rms_norm(module: nn.Module) -> bool:
    """torch's RMSNorm or a model's own (LlamaRMSNorm, ...): y = γ ⊙ x / rms(x)."""
    return isinstance(module, getattr(nn, "RMSNorm", ())) or (
        type(module).__name__.endswith("RMSNorm") and isinstance(getattr(module, "weight", None), nn.Parameter))


def _bias_types() -> tuple[type, ...]:
    return with_transformers_conv1d((nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, *_NORMS))


@dataclass
class BitFitConfig(SwiftConfig):
    """swiftlite's own config (ms-swift has no BitFit tuner)."""

    swift_type: str = field(default="BITFIT")
    target_modules: Target = None  # None: every Linear/Conv/Norm with a bias (mode "bias") or every norm layer (mode "norm")
    mode: str = "bias"  # "bias": BitFit (Δb); "norm": LayerNorm tuning (Δγ and Δβ of norm layers)
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)

    _invalid_examples: ClassVar[dict] = {"mode": "weights", "target_modules": 7}

    def validate(self) -> None:
        self._require(self.mode in ("bias", "norm"), "mode",
                      f"must be 'bias' (BitFit) or 'norm' (LayerNorm tuning), got {self.mode!r}")
        t = self.target_modules
        self._require(t is None or isinstance(t, str) or (isinstance(t, (list, tuple)) and all(isinstance(n, str) for n in t)),
                      "target_modules", f"expected None, a regex or a list of module names, got {t!r}")


class BitFitLayer(TunerLayer):
    """Adds Δb (and in norm mode Δγ) to a frozen layer's bias (and weight)."""

    adapter_attrs = ("bitfit_bias", "bitfit_weight")
    mergeable = True

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.bitfit_bias = nn.ParameterDict()
        self.bitfit_weight = nn.ParameterDict()
        self.channel_axis = 1 if isinstance(innermost_base_layer(base_layer), _CHANNEL_FIRST) else -1
        self._created_bias = False  # True while a merge had to create the base layer's missing bias

    @property
    def core(self) -> nn.Module:
        """The original layer (under another tuner's wrapper, e.g. LoRA, when BitFit is stacked on it)."""
        return innermost_base_layer(self.base_layer)

    def _num_channels(self) -> tuple[int, ...]:
        base = self.core
        if isinstance(getattr(base, "bias", None), nn.Parameter):
            return tuple(base.bias.shape)
        if isinstance(base, nn.Linear):
            return (base.out_features,)
        if isinstance(base, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return (base.out_channels,)
        if isinstance(base, nn.GroupNorm):
            return (base.num_channels,)
        if isinstance(base, nn.LayerNorm):
            return tuple(base.normalized_shape)
        if isinstance(getattr(base, "weight", None), nn.Parameter):  # Conv1D (d_in, d_out), RMSNorm (d,)
            return (base.weight.shape[-1],)
        raise TypeError(f"BitFit cannot tell the output channels of {type(base).__name__}")

    # Models read these through the wrapper (e.g. ViT: `projection.weight.dtype`).
    @property
    def weight(self) -> torch.Tensor:
        return self.core.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.core, "bias", None)

    def add_adapter(self, adapter_name: str, config: BitFitConfig) -> None:
        device, dtype = self._base_device_dtype()
        shape = self._num_channels()
        if not _is_rms_norm(self.core):  # an RMSNorm has no β to shift
            self.bitfit_bias[adapter_name] = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype))  # Δb = 0
        if config.mode == "norm":
            if self.core is not self.base_layer:
                raise ValueError("BitFitConfig.mode='norm': this norm layer is wrapped by another tuner; "
                                 "add the BitFit adapter before the other one")
            if not isinstance(getattr(self.core, "weight", None), nn.Parameter):
                raise ValueError(f"BitFitConfig.mode='norm': {type(self.core).__name__} has no affine weight "
                                 f"(elementwise_affine=False?); target norm layers with a weight")
            self.bitfit_weight[adapter_name] = nn.Parameter(torch.zeros_like(self.core.weight))  # Δγ = 0

    def _has_base_bias(self) -> bool:
        return isinstance(getattr(self.core, "bias", None), nn.Parameter)

    def _on_channels(self, delta: torch.Tensor, ndim: int) -> torch.Tensor:
        """Broadcast a (C,) or normalized_shape delta onto the output's channel axis."""
        if self.channel_axis == -1:
            return delta
        return delta.view(-1, *([1] * (ndim - 2)))  # (C, 1, ..., 1) against (B, C, ...)

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        active = self.active_adapters
        d_weight = [self.bitfit_weight[n] for n in active if n in self.bitfit_weight]
        if d_weight:
            # y = (γ + Δγ) ⊙ x̂ + β : run the frozen norm with its weight swapped for γ + Δγ
            h = functional_call(self.base_layer, {"weight": self.base_layer.weight + sum(d_weight)}, args, kwargs)
        else:
            h = self.base_layer(*args, **kwargs)
        for name in active:
            if name in self.bitfit_bias:
                # h = W x + (b + Δb)
                h = h + self._on_channels(self.bitfit_bias[name], h.dim())
        return h

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        d_bias = self.bitfit_bias[adapter_name].detach() if adapter_name in self.bitfit_bias else None
        d_weight = self.bitfit_weight[adapter_name].detach() if adapter_name in self.bitfit_weight else None
        if safe_merge:
            for delta in (d_bias, d_weight):
                if delta is not None:
                    check_finite(delta, f"BitFit adapter {adapter_name!r}")
        if d_bias is not None and not self._has_base_bias():
            # b did not exist: create it (frozen) so the merged layer computes W x + Δb
            self.core.bias = nn.Parameter(torch.zeros_like(d_bias), requires_grad=False)
            self._created_bias = True
        if d_bias is not None:
            self.core.bias.data = self.core.bias.data + d_bias
        if d_weight is not None:
            self.core.weight.data = self.core.weight.data + d_weight

    def unmerge(self, adapter_name: str) -> None:
        if adapter_name in self.bitfit_bias:
            self.core.bias.data = self.core.bias.data - self.bitfit_bias[adapter_name].detach()
        if adapter_name in self.bitfit_weight:
            self.core.weight.data = self.core.weight.data - self.bitfit_weight[adapter_name].detach()
        still_merged = [n for n in self.merged_adapters if n != adapter_name and n in self.bitfit_bias]
        if self._created_bias and not still_merged:
            self._created_bias = False
            self.core.bias = None  # back to the bias-free original


@register_tuner
class BitFitTuner(Tuner):
    """Wraps every layer with a bias (or every norm layer, mode="norm") under the targets."""

    config_class = BitFitConfig
    layer_class = BitFitLayer
    mergeable = True

    @classmethod
    def match(cls, model: nn.Module, config: BitFitConfig) -> list[str]:
        name = type(config).__name__
        if config.mode == "norm":
            found = match_modules(model, config.target_modules or r".+", config_name=name)
            found = [n for n in found if _is_norm(innermost_base_layer(model.get_submodule(n)))]
            hint = "mode='norm' needs LayerNorm / GroupNorm / RMSNorm layers"
        elif config.target_modules is not None:
            return match_modules(model, config.target_modules, types=_bias_types(), config_name=name)
        else:  # BitFit's rule: every supported layer that has a bias
            found = match_modules(model, r".+", types=_bias_types(), config_name=name, skip_unsupported=True)
            found = [n for n in found if isinstance(getattr(innermost_base_layer(model.get_submodule(n)), "bias", None), nn.Parameter)]
            hint = ("no Linear/Conv/Norm layer of this model has a bias (e.g. LLaMA); name the layers to give a new "
                    "zero-initialised bias, e.g. target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj']")
        if not found:
            raise ValueError(f"{name}.target_modules={config.target_modules!r} matched no module: {hint}")
        return found


def _is_norm(module: nn.Module) -> bool:
    return (isinstance(module, _NORMS) and getattr(module, "weight", None) is not None) or _is_rms_norm(module)
