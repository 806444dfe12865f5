"""(IA)^3: Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning
(Liu et al., 2022, arXiv:2205.05638).

Three learned vectors rescale the keys, the values and the inner feed-forward activations::

    softmax(Q (l_k ⊙ K)ᵀ / √d_k) (l_v ⊙ V)            l_k ∈ R^{d_k}, l_v ∈ R^{d_v}
    (l_ff ⊙ γ(W_1 x)) W_2                              l_ff ∈ R^{d_ff}

Attached to a projection layer `h = W x + b` this is one of two elementwise products:

    output scaling  (k_proj, v_proj, ...):         h = l ⊙ (W x + b)      l ∈ R^{d_out}
    input scaling   (feedforward_modules, W_2):     h = W (l ⊙ x) + b      l ∈ R^{d_in}

With l = 1 at initialisation the model is unchanged, and both forms fold into the weights
(row or column scaling of W), so a merged (IA)^3 model costs nothing at inference.

Differences from the paper: the paper pre-trains the vectors on a multi-task mixture ("T-Few");
here they start at 1 (PEFT's `init_ia3_weights=True`). As in PEFT, any Linear / Conv / GPT-2
Conv1D may be targeted, not only keys, values and the FFN.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Target
from ..core.layer import check_finite
from ..core.modules import is_transformers_conv1d, with_transformers_conv1d
from ..core.targeting import name_matches, replace_module

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class IA3Config(SwiftConfig):
    """swiftlite's own config (ms-swift uses PEFT's `IA3Config`; field names follow PEFT)."""

    swift_type: str = field(default="IA3")
    target_modules: Target = None  # layers to rescale, e.g. ["k_proj", "v_proj", "down_proj"]
    feedforward_modules: Target = None  # subset of targets whose INPUT is scaled (the FFN's W_2)
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)
    init_ia3_weights: bool = True  # True: l = 1 (identity at init); False: l ~ N(1, 0.1²) (for tests)

    _invalid_examples: ClassVar[dict] = {"target_modules": None, "feedforward_modules": 3, "init_ia3_weights": "yes"}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required, e.g. ['k_proj', 'v_proj', 'down_proj'] or r'.*(k_proj|v_proj|down_proj)'")
        ff = self.feedforward_modules
        self._require(ff is None or isinstance(ff, str) or (isinstance(ff, (list, tuple)) and all(isinstance(n, str) for n in ff)),
                      "feedforward_modules", f"expected None, a regex or a list of module names, got {ff!r}")
        if isinstance(ff, (list, tuple)) and isinstance(self.target_modules, (list, tuple)):
            missing = sorted(set(ff) - set(self.target_modules))
            self._require(not missing, "feedforward_modules",
                          f"{missing} are not in target_modules; feedforward modules must be a subset of the targets")
        self._require(isinstance(self.init_ia3_weights, bool), "init_ia3_weights",
                      f"must be True or False, got {self.init_ia3_weights!r}")


class IA3Layer(TunerLayer):
    """Rescales the output channels (or, for feed-forward modules, the input channels) of one layer."""

    adapter_attrs = ("ia3_l",)
    mergeable = True

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.ia3_l = nn.ParameterDict()
        self.is_feedforward: dict[str, bool] = {}
        if isinstance(base_layer, TunerLayer):
            raise ValueError(f"IA3Config.target_modules: this layer is already wrapped by {type(base_layer).__name__}; "
                             f"(IA)^3 cannot stack on another tuner's layer (merging would scale only part of it)")
        # Where the channels live: weight axes (out, in) and the activation's channel axis.
        if isinstance(base_layer, nn.Linear):
            self.out_axis, self.in_axis, self.act_axis = 0, 1, -1
            self.d_in, self.d_out = base_layer.in_features, base_layer.out_features
        elif is_transformers_conv1d(base_layer):  # GPT-2's Conv1D stores W as (d_in, d_out)
            self.out_axis, self.in_axis, self.act_axis = 1, 0, -1
            self.d_in, self.d_out = base_layer.weight.shape
        elif isinstance(base_layer, _CONV):
            self.out_axis, self.in_axis, self.act_axis = 0, 1, 1
            self.d_in, self.d_out = base_layer.in_channels, base_layer.out_channels
        else:
            raise TypeError(f"IA3 supports Linear, Conv1d/2d/3d and transformers' Conv1D, got {type(base_layer).__name__}")

    def add_adapter(self, adapter_name: str, config: IA3Config, is_feedforward: bool = False) -> None:
        if is_feedforward and getattr(self.base_layer, "groups", 1) != 1:
            raise ValueError("IA3Config.feedforward_modules: input scaling of a grouped convolution cannot be merged; "
                             "remove it from feedforward_modules")
        device, dtype = self._base_device_dtype()
        d = self.d_in if is_feedforward else self.d_out
        l = torch.ones(d, device=device, dtype=dtype)  # l = 1: identity at init
        if not config.init_ia3_weights:
            l = l + 0.1 * torch.randn(d, device=device, dtype=dtype)
        self.ia3_l[adapter_name] = nn.Parameter(l)
        self.is_feedforward[adapter_name] = is_feedforward

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.is_feedforward.pop(adapter_name, None)

    def _on_axis(self, l: torch.Tensor, ndim: int, axis: int) -> torch.Tensor:
        """Reshape the vector l (d,) to broadcast along `axis` of a tensor with `ndim` dims."""
        shape = [1] * ndim
        shape[axis] = -1
        return l.view(shape)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        l_in = l_out = None
        for name in self.active_adapters:
            l = self.ia3_l[name]
            if self.is_feedforward[name]:
                l_in = l if l_in is None else l_in * l
            else:
                l_out = l if l_out is None else l_out * l
        if l_in is not None:
            # h = W (l ⊙ x) + b
            x = x * self._on_axis(l_in, x.dim(), self.act_axis)
        h = self.base_layer(x, *args, **kwargs)
        if l_out is not None:
            # h = l ⊙ (W x + b)
            h = h * self._on_axis(l_out, h.dim(), self.act_axis)
        return h

    def _scaled(self, adapter_name: str, inverse: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """New (weight, bias) with l (or 1/l) folded in: rows for output scaling, columns for input."""
        l = self.ia3_l[adapter_name].detach()
        l = 1.0 / l if inverse else l
        weight, bias = self.base_layer.weight.data, getattr(self.base_layer, "bias", None)
        if self.is_feedforward[adapter_name]:
            return weight * self._on_axis(l, weight.dim(), self.in_axis), None
        new_bias = None if bias is None else bias.data * l
        return weight * self._on_axis(l, weight.dim(), self.out_axis), new_bias

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        weight, bias = self._scaled(adapter_name, inverse=False)
        if safe_merge:
            check_finite(weight, f"IA3 adapter {adapter_name!r}")
            if (self.ia3_l[adapter_name] == 0).any():
                raise ValueError(f"safe_merge: IA3 adapter {adapter_name!r} has zero entries, so unmerge() could not "
                                 f"restore the weights; nothing was changed")
        self.base_layer.weight.data = weight
        if bias is not None:
            self.base_layer.bias.data = bias

    def unmerge(self, adapter_name: str) -> None:
        weight, bias = self._scaled(adapter_name, inverse=True)
        self.base_layer.weight.data = weight
        if bias is not None:
            self.base_layer.bias.data = bias


@register_tuner
class IA3Tuner(Tuner):
    config_class = IA3Config
    layer_class = IA3Layer
    mergeable = True

    @classmethod
    def supported_types(cls) -> tuple[type, ...]:
        return with_transformers_conv1d((nn.Linear, *_CONV))

    @classmethod
    def inject(cls, model: nn.Module, config: IA3Config, adapter_name: str) -> None:
        for name in cls.match(model, config):
            module = model.get_submodule(name)
            is_ff = name_matches(name, config.feedforward_modules)
            if isinstance(module, IA3Layer):
                module.add_adapter(adapter_name, config, is_feedforward=is_ff)
            else:
                layer = IA3Layer(module)
                layer.add_adapter(adapter_name, config, is_feedforward=is_ff)
                replace_module(model, name, layer)

