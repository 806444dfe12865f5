"""Hydra: Multi-head Low-rank Adaptation for Parameter Efficient Fine-tuning
(Kim et al., 2023, arXiv:2309.06922).

Two low-rank branches around one frozen linear layer `y₀ = W₀ x + b₀`: a *parallel* branch that reads
the layer's input (LoRA's place) and a *sequential* branch that reads its output (an adapter's place)::

    y = y₀ + s·(B_p A_p x + c_p) + s·(B_s A_s y₀ + c_s)        A_* ∈ R^{r×d}, B_* ∈ R^{d'×r}, B_* = 0 at init

(`c_p = B_p a_p + u_p` and `c_s` are the constant terms the branches' biases add). Both branches are
linear, so the whole layer is one linear map again, and Hydra merges back into W₀ (its
"reparameterisation")::

    W = W₀ + s·(W_p + W_s W₀)       W_p = B_p A_p,  W_s = B_s A_s
    b = b₀ + s·(W_s b₀ + B_p a_p + u_p + B_s a_s + u_s)

The reference code applies it to the output projections `attn.proj` and `mlp.fc2` of each ViT block,
rank 2, scale 0.1 (the defaults here are r=2, scale=0.1).

Differences from the paper / its code:
- The reference's attention-branch merge builds the merged weight from `mlp.fc2`'s weight instead of
  `attn.proj`'s and passes transposed factors; here one merge rule serves every target and
  tests/test_relatives.py checks merged == unmerged numerically on attention and MLP projections.
- Several Hydra adapters on one layer act one after the other (adapter k's sequential branch reads the
  output of adapters 1..k-1), so merging them in order is exact; the paper has one adapter.
- No dropout inside the branches (the reference's default is 0 too). A target without a bias (LLaMA's
  projections) gets branches without biases, so the merged layer needs no new bias parameter.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import PositiveInt, Target
from ..core.layer import check_finite
from ..core.modules import is_transformers_conv1d, with_transformers_conv1d


@dataclass
class HydraConfig(SwiftConfig):
    """swiftlite's own config (neither ms-swift nor PEFT has Hydra); names follow LoRAConfig."""

    swift_type: str = field(default="HYDRA")
    target_modules: Target = None  # linear layers, e.g. ["attention.o_proj", "mlp.fc2"] (the reference's proj / fc2)
    r: PositiveInt = 2  # rank of each branch (the reference's `dim`, 2)
    scale: float = 0.1  # s: both branches are multiplied by it (the reference's default 0.1)
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)

    _invalid_examples: ClassVar[dict] = {"target_modules": None, "r": 0, "scale": "big"}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the output projections, e.g. ['attention.o_proj', 'mlp.fc2']")


class Branch(nn.Module):
    """x -> B (A x + a) + u : a rank-r linear map with biases (the reference's `Hydra_layer`)."""

    def __init__(self, d_in: int, r: int, d_out: int, bias: bool, device=None, dtype=None) -> None:
        super().__init__()
        self.down = nn.Linear(d_in, r, bias=bias, device=device, dtype=dtype)  # A, a
        self.up = nn.Linear(r, d_out, bias=bias, device=device, dtype=dtype)  # B, u
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.up.weight)  # B = 0: the branch starts at zero
        if bias:
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(B A, B a + u): the branch as one affine map."""
        if self.up.bias is None:
            return self.up.weight @ self.down.weight, torch.zeros_like(self.up.weight[:, 0])
        return self.up.weight @ self.down.weight, self.up.weight @ self.down.bias + self.up.bias


class HydraLayer(TunerLayer):
    """Wraps a Linear (or transformers' Conv1D); adds the parallel and sequential branches."""

    adapter_attrs = ("hydra_par", "hydra_seq")
    mergeable = True
    keep_pre_merge = True  # unmerge restores W₀, b₀ exactly (inverting I + s·W_s would not be exact)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.hydra_par = nn.ModuleDict()
        self.hydra_seq = nn.ModuleDict()
        self.scale: dict[str, float] = {}
        self.transposed = is_transformers_conv1d(base_layer)  # Conv1D keeps W as (d_in, d_out)
        weight = base_layer.weight
        self.d_in, self.d_out = (weight.shape[0], weight.shape[1]) if self.transposed else (weight.shape[1], weight.shape[0])

    def add_adapter(self, adapter_name: str, config: HydraConfig) -> None:
        device, dtype = self._base_device_dtype()
        bias = self.base_layer.bias is not None  # a bias-free layer gets bias-free branches: the merge stays exact
        self.hydra_par[adapter_name] = Branch(self.d_in, config.r, self.d_out, bias, device, dtype)
        self.hydra_seq[adapter_name] = Branch(self.d_out, config.r, self.d_out, bias, device, dtype)
        self.scale[adapter_name] = config.scale

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.scale.pop(adapter_name, None)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)
        for name in self.active_adapters:
            s = self.scale[name]
            # y = y₀ + s·(B_p A_p x + c_p) + s·(B_s A_s y₀ + c_s)
            y = y + s * self.hydra_par[name](x) + s * self.hydra_seq[name](y)
        return y

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        base, s = self.base_layer, self.scale[adapter_name]
        w0 = base.weight.detach().T if self.transposed else base.weight.detach()  # (d_out, d_in)
        b0 = base.bias.detach() if base.bias is not None else torch.zeros(self.d_out, device=w0.device, dtype=w0.dtype)
        w_p, c_p = (t.detach() for t in self.hydra_par[adapter_name].weight_and_bias())
        w_s, c_s = (t.detach() for t in self.hydra_seq[adapter_name].weight_and_bias())
        # W = W₀ + s·(W_p + W_s W₀)
        weight = w0 + s * (w_p + w_s @ w0)
        # b = b₀ + s·(W_s b₀ + c_p + c_s)
        bias = b0 + s * (w_s @ b0 + c_p + c_s)
        if safe_merge:
            check_finite(weight, f"Hydra adapter {adapter_name!r}")
            check_finite(bias, f"Hydra adapter {adapter_name!r}")
        base.weight.data = (weight.T if self.transposed else weight).contiguous().to(base.weight.dtype)
        if base.bias is not None:
            base.bias.data = bias.to(base.bias.dtype)


@register_tuner
class HydraTuner(Tuner):
    """Wraps each matched Linear / Conv1D in a HydraLayer."""

    config_class = HydraConfig
    layer_class = HydraLayer
    mergeable = True

    @classmethod
    def supported_types(cls) -> tuple[type, ...]:
        return with_transformers_conv1d((nn.Linear,))
