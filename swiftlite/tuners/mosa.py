"""MoSA: Mixture of Sparse Adapters for Visual Efficient Tuning (Zhang et al., 2023, arXiv:2312.02923).

An AdaptFormer adapter runs beside a frozen module M (the reference: beside each ViT block's MLP)::

    y = M(x) + s · W_up act(W_down x + b_down) + s · b_up

MoSA splits each weight matrix into E sparse *experts* by disjoint random masks M_1 … M_E that cover
every entry once (an equal random partition). In training each step picks one down-expert A and one
up-expert B at random, and only their entries take part (and so only they get gradients)::

    train:  W_down ← W_down,A ⊙ M_A,    W_up ← W_up,B ⊙ M_B          A, B ~ U{1..E}, each step
    eval:   W_down = Σ_e W_down,e ⊙ M_e,   W_up = Σ_e W_up,e ⊙ M_e     (the experts summed: one dense adapter)

Because the masks are disjoint, the summed adapter holds every expert unchanged on its own entries, so
the eval-time merge loses nothing and costs one dense adapter at inference (`merged_experts` returns it;
tests/test_relatives.py checks it against a plain adapter built from those weights, and that each
expert can be read back from it). Defaults are the reference's: E = 4, bottleneck 64, scale 0.1; W_down
starts as one Kaiming-uniform draw shared out among the experts, W_up = 0 (so the model is unchanged).

Differences from the paper / its code: the reference keeps E full copies and masks their gradients;
here each expert's weight is masked in the forward pass, which gives the same updates and the same
sum. The biases are shared by all experts (the reference gives each expert a bias copy, and summing
copies would multiply them). No adapter LayerNorm: the adapter reads M's input (on a transformers ViT,
`mlp` reads `layernorm_after`'s output). Only the 'random' partition (the reference's default pruner).
Not mergeable into the base weights: the adapter is non-linear.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import PositiveInt, Target
from ..core.tuner import feature_width
from .adapter import ACTIVATIONS


@dataclass
class MoSAConfig(SwiftConfig):
    """swiftlite's own config (neither ms-swift nor PEFT has MoSA); names follow AdapterConfig."""

    swift_type: str = field(default="MOSA")
    target_modules: Target = None  # modules the adapter runs beside, e.g. r"vit\\.layers\\.\\d+\\.mlp"
    adapter_length: PositiveInt = 64  # bottleneck width (the reference: 64)
    num_experts: PositiveInt = 4  # E sparse experts per weight matrix (the reference: 4)
    scale: float = 0.1  # s (the reference: 0.1)
    act_layer: str = "gelu"  # the reference's AdaptFormer style uses GELU
    mask_seed: int = 0  # seed of the random partition into experts (saved in the config, rebuilt on load)
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)

    _invalid_examples: ClassVar[dict] = {"target_modules": None, "num_experts": 0, "act_layer": "nope"}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the modules to run beside, e.g. r'vit\\.layers\\.\\d+\\.mlp'")
        self._require(self.act_layer in ACTIVATIONS, "act_layer",
                      f"{self.act_layer!r} is unknown; choose one of {sorted(ACTIVATIONS)}")


def random_partition(shape: tuple[int, ...], num_experts: int, generator: torch.Generator) -> torch.Tensor:
    """(E, *shape) boolean masks: a random equal split of the entries among E experts (disjoint, covering)."""
    n = math.prod(shape)
    owner = torch.empty(n, dtype=torch.long)
    owner[torch.randperm(n, generator=generator)] = torch.arange(n) % num_experts  # entry -> its expert
    return torch.stack([(owner == e).reshape(shape) for e in range(num_experts)])


class MoSAModule(nn.Module):
    """The experts of one adapter: stacked weights (E, out, in), shared biases, fixed masks."""

    def __init__(self, d_in: int, r: int, d_out: int, config: MoSAConfig, device=None, dtype=None) -> None:
        super().__init__()
        E = config.num_experts
        down = nn.Linear(d_in, r)  # one draw of AdaptFormer's init (Kaiming-uniform), shared out among the experts
        g = torch.Generator().manual_seed(config.mask_seed)
        self.register_buffer("mask_down", random_partition((r, d_in), E, g), persistent=False)  # (E, r, d_in)
        self.register_buffer("mask_up", random_partition((d_out, r), E, g), persistent=False)  # (E, d_out, r)
        self.down_experts = nn.Parameter((down.weight.detach() * self.mask_down).to(device, dtype))  # (E, r, d_in)
        self.down_bias = nn.Parameter(torch.zeros(r, device=device, dtype=dtype))
        self.up_experts = nn.Parameter(torch.zeros(E, d_out, r, device=device, dtype=dtype))  # W_up = 0
        self.up_bias = nn.Parameter(torch.zeros(d_out, device=device, dtype=dtype))
        self.act = ACTIVATIONS[config.act_layer]()
        self.scale = config.scale
        self.mask_down, self.mask_up = self.mask_down.to(device), self.mask_up.to(device)

    def merged_experts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_down, W_up) of the summed adapter: Σ_e W_e ⊙ M_e."""
        # W = Σ_e W_e ⊙ M_e
        w_down = (self.down_experts * self.mask_down).sum(0)
        w_up = (self.up_experts * self.mask_up).sum(0)
        return w_down, w_up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            a, b = torch.randint(len(self.mask_down), (2,)).tolist()  # one random expert per matrix, per step
            # W_down ← W_down,A ⊙ M_A,  W_up ← W_up,B ⊙ M_B
            w_down, w_up = self.down_experts[a] * self.mask_down[a], self.up_experts[b] * self.mask_up[b]
        else:
            w_down, w_up = self.merged_experts()
        # y = M(x) + s · (W_up act(W_down x + b_down) + b_up)      (this returns the second term)
        return self.scale * F.linear(self.act(F.linear(x, w_down, self.down_bias)), w_up, self.up_bias)


class MoSALayer(TunerLayer):
    """Wraps a module M; adds every active MoSA adapter's output to M's output."""

    adapter_attrs = ("mosa",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.mosa = nn.ModuleDict()

    def add_adapter(self, adapter_name: str, config: MoSAConfig) -> None:
        d_in, d_out = (feature_width(self.base_layer, side) for side in ("in", "out"))
        device, dtype = self._base_device_dtype()
        self.mosa[adapter_name] = MoSAModule(d_in[0], config.adapter_length, d_out[0], config, device, dtype)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)
        for name in self.active_adapters:
            y = y + self.mosa[name](x).to(y.dtype)
        return y


@register_tuner
class MoSATuner(Tuner):
    """Wraps each matched module in a MoSALayer."""

    config_class = MoSAConfig
    layer_class = MoSALayer
    not_mergeable_reason = ("the adapter is a non-linear bottleneck beside the module; its experts merge into one "
                            "adapter at eval (`MoSAModule.merged_experts`), not into the base weights")

    @classmethod
    def check(cls, model: nn.Module, config: MoSAConfig, names: list[str]) -> None:
        for name in names:
            module = model.get_submodule(name)
            if feature_width(module, "in") is None or feature_width(module, "out") is None:
                raise ValueError(f"MoSAConfig.target_modules: {name!r} ({type(module).__name__}) has no Linear layer "
                                 f"that tells its feature width; target a module such as an MLP block")
