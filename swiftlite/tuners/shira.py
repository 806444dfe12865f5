"""SHiRA: Sparse High Rank Adapters (Bhardwaj et al., 2024, arXiv:2406.13175).

A frozen linear layer `y = W₀ x + b` gets a *sparse* update: a fixed random set Ω of r·(m+n) entries of
the m×n weight (as many as a rank-r LoRA trains) is trainable, every other entry stays frozen::

    y = (W₀ + s·ΔW) x + b          ΔW_ij = v_k if (i, j) = Ω_k ∈ Ω, else 0          v = 0 at init

ΔW is high-rank although it has few non-zeros; merging is a sparse add `W ← W₀ + s·ΔW` (exact, and
undone by the matching subtraction). The scaling `s` is 1 in training and can be set at inference
(`set_scale`), as in PEFT.

Checkpoints are PEFT's: the values `v` (`<module>.shira_weight`) and the indices Ω
(`<module>.shira_indices`, int32, shape (2, r(m+n))). Ω is drawn as PEFT's `random_mask` draws it (a
`torch.randperm` of the m·n positions from a generator seeded with `random_seed`, the first r(m+n)
kept, read back in row-major order), and a loaded checkpoint's Ω replaces the drawn one, as in PEFT.
So a SHiRA checkpoint written here loads in `peft.PeftModel` and PEFT's loads here
(tests/test_relatives.py). Config fields are PEFT's `ShiraConfig`'s.

Differences from PEFT: only `mask_type="random"` (PEFT also takes a user mask function, which is not
serialisable); PEFT computes the forward with a dense copy of W₀ + ΔW, here `W₀ x + s·ΔW x` (the same
numbers up to float rounding).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import PositiveInt, Target
from ..core.layer import canonical_name, check_finite, tuner_layers
from ..core.peft_format import PeftSpec


@dataclass
class ShiraConfig(SwiftConfig):
    """Field names and defaults follow PEFT's `ShiraConfig`."""

    swift_type: str = field(default="SHIRA")
    r: PositiveInt = 32  # r(m+n) trainable entries per m×n layer: LoRA's parameter count at rank r
    mask_type: str = "random"  # the only mask PEFT can rebuild from its config
    random_seed: int | None = None  # seed of the mask's generator (None: a fresh torch.Generator's default seed, as PEFT)
    target_modules: Target = None  # nn.Linear layers, e.g. ["q_proj", "v_proj"]
    fan_in_fan_out: bool = False  # PEFT's field; only False (nn.Linear) is supported, as in PEFT's SHiRA
    init_weights: bool = True  # True: v = 0 (identity at init); False: v ~ N(0, 1) (for tests)
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)

    _invalid_examples: ClassVar[dict] = {"target_modules": None, "r": 0, "mask_type": "topk", "fan_in_fan_out": True}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: nn.Linear layers, e.g. ['q_proj', 'v_proj']")
        self._require(self.mask_type == "random", "mask_type",
                      f"only 'random' is supported (PEFT rebuilds it from random_seed), got {self.mask_type!r}")
        self._require(self.fan_in_fan_out is False, "fan_in_fan_out",
                      "must be False: SHiRA supports nn.Linear layers only (as in PEFT)")


def random_mask_indices(d_out: int, d_in: int, r: int, random_seed: int | None) -> torch.Tensor:
    """Ω as a (2, r(m+n)) tensor of (row, column) pairs in row-major order: the positions PEFT's
    `random_mask` picks for the same shape, r and seed."""
    generator = torch.Generator()
    if random_seed is not None:
        generator.manual_seed(random_seed)
    picked = torch.randperm(d_out * d_in, generator=generator)[: r * (d_out + d_in)]
    flat = picked.sort().values  # row-major order, as PEFT reads its 0/1 mask back with torch.where
    return torch.stack([flat // d_in, flat % d_in])  # (2, K): rows, columns


class ShiraLayer(TunerLayer):
    """Wraps an nn.Linear; adds the sparse update s·ΔW of every active adapter."""

    adapter_attrs = ("shira_weight",)
    mergeable = True

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        if isinstance(base_layer, TunerLayer):
            raise ValueError("ShiraConfig.target_modules: this layer is already wrapped by another tuner; "
                             "SHiRA needs the plain nn.Linear (as in PEFT)")
        self.shira_weight = nn.ParameterDict()
        self.shira_indices: dict[str, torch.Tensor] = {}  # rebuilt from the config, never saved (as in PEFT)
        self.scaling: dict[str, float] = {}
        self.d_out, self.d_in = base_layer.weight.shape

    def add_adapter(self, adapter_name: str, config: ShiraConfig) -> None:
        count = config.r * (self.d_out + self.d_in)
        if count > self.d_out * self.d_in:
            raise ValueError(f"ShiraConfig.r={config.r}: r(m+n) = {count} entries is more than the "
                             f"{self.d_out}x{self.d_in} layer has; lower r below {self.d_out * self.d_in // (self.d_out + self.d_in) + 1}")
        device, dtype = self._base_device_dtype()
        values = torch.zeros(count) if config.init_weights else torch.randn(count)
        self.shira_weight[adapter_name] = nn.Parameter(values.to(device, dtype))  # v
        self.shira_indices[adapter_name] = random_mask_indices(self.d_out, self.d_in, config.r, config.random_seed).to(device)
        self.scaling[adapter_name] = 1.0

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.shira_indices.pop(adapter_name, None)
        self.scaling.pop(adapter_name, None)

    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        """ΔW (m×n, dense storage) with the values v at the positions Ω."""
        v = self.shira_weight[adapter_name]
        rows, cols = self.shira_indices[adapter_name].to(v.device)
        # ΔW_ij = v_k if (i, j) = Ω_k, else 0
        return torch.zeros(self.d_out, self.d_in, device=v.device, dtype=v.dtype).index_put((rows, cols), v)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)
        for name in self.active_adapters:
            # y = W₀ x + b + s·ΔW x
            y = y + self.scaling[name] * F.linear(x.to(self.shira_weight[name].dtype), self.delta_weight(name)).to(y.dtype)
        return y

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        delta = self.scaling[adapter_name] * self.delta_weight(adapter_name).detach()
        if safe_merge:
            check_finite(delta, f"SHiRA adapter {adapter_name!r}")
        self.base_layer.weight.data += delta.to(self.base_layer.weight.dtype)  # W ← W₀ + s·ΔW (a sparse add)

    def unmerge(self, adapter_name: str) -> None:
        delta = self.scaling[adapter_name] * self.delta_weight(adapter_name).detach()
        self.base_layer.weight.data -= delta.to(self.base_layer.weight.dtype)


def set_scale(model: nn.Module, adapter_name: str, scale: float) -> None:
    """Set the inference scaling s of one SHiRA adapter in every layer (PEFT's `ShiraLayer.set_scale`).
    Unmerge first: a merged adapter is already in the weights at its old scale."""
    model = getattr(model, "base_model", model)
    for _, layer in tuner_layers(model):
        if isinstance(layer, ShiraLayer) and adapter_name in layer.scaling:
            if adapter_name in layer.merged_adapters:
                raise ValueError(f"set_scale: SHiRA adapter {adapter_name!r} is merged; unmerge() it first")
            layer.scaling[adapter_name] = float(scale)


@register_tuner
class ShiraTuner(Tuner):
    """Wraps each matched nn.Linear in a ShiraLayer; checkpoints convert to PEFT's by renaming."""

    config_class = ShiraConfig
    layer_class = ShiraLayer
    target_types = (nn.Linear,)
    mergeable = True
    peft_type = "SHIRA"
    peft_spec = PeftSpec(
        containers=frozenset({"shira_weight", "shira_indices"}),
        fields=("r", "mask_type", "random_seed", "target_modules", "fan_in_fan_out", "init_weights", "modules_to_save"),
        accepted={"mask_type": ("random",), "fan_in_fan_out": (False,)},
    )

    @classmethod
    def to_saved_state(cls, model: nn.Module, config: ShiraConfig, weights: dict[str, Any], adapter_name: str
                       ) -> dict[str, Any]:
        """The values, plus each layer's indices Ω as `<layer>.shira_indices.<adapter>` (int32, as PEFT saves them)."""
        out = dict(weights)
        for path, layer in tuner_layers(model):
            if isinstance(layer, ShiraLayer) and adapter_name in layer.shira_indices:
                out[f"{canonical_name(model, path)}.shira_indices.{adapter_name}"] = \
                    layer.shira_indices[adapter_name].to(torch.int32).cpu()
        return out

    @classmethod
    def from_saved_state(cls, model: nn.Module, config: ShiraConfig, weights: dict[str, Any], adapter_name: str
                         ) -> dict[str, Any]:
        """Install the saved indices Ω in their layers (checked first); return the values only."""
        # `<layer>.shira_indices.<name>`: <name> may be the adapter's name in the checkpoint, not `adapter_name`
        saved = {k.rsplit(".shira_indices.", 1)[0]: v for k, v in weights.items() if ".shira_indices." in k}
        layers = {canonical_name(model, p): m for p, m in tuner_layers(model) if isinstance(m, ShiraLayer)}
        for name, indices in saved.items():
            layer = layers.get(name)
            count = layer.shira_weight[adapter_name].numel() if layer is not None else None
            if layer is None or tuple(indices.shape) != (2, count):
                raise ValueError(f"SHiRA checkpoint: {name}.shira_indices does not fit this model's SHiRA layer "
                                 f"{name!r} (shape {tuple(indices.shape)}, expected (2, {count}))")
            if indices.min() < 0 or indices[0].max() >= layer.d_out or indices[1].max() >= layer.d_in:
                raise ValueError(f"SHiRA checkpoint: {name}.shira_indices points outside the "
                                 f"{layer.d_out}x{layer.d_in} weight")
        for name, indices in saved.items():
            layers[name].shira_indices[adapter_name] = indices.long().to(layers[name].shira_weight[adapter_name].device)
        return {k: v for k, v in weights.items() if ".shira_indices." not in k}
