"""Binary (1-bit) adapters: Revisiting the Parameter Efficiency of Adapters from the Perspective of
Precision Redundancy (Jie et al., 2023, arXiv:2307.16867).

An AdaptFormer-style bottleneck runs beside a frozen module M (the reference: beside each ViT block's
MLP), and each of its two weight matrices is stored with ONE BIT per entry::

    y = M(x) + s · Ŵ_up ReLU(Ŵ_down x)
    Ŵ = μ + σ · q((W − μ) / σ)          q(z) = 0.6745 · sign(z)        μ, σ = mean and std of W

±0.6745 = Φ⁻¹(¾) is the 1-bit code book of the reference (the median of each half of N(0, 1)). In
training W is a float "latent" weight and q passes gradients straight through (the straight-through
estimator: ∂q/∂z := 1). On disk each matrix is its packed sign bits plus μ and σ:
`<key>.codes` (uint8, 8 signs per byte), `<key>.mean`, `<key>.std` — d·r/8 bytes + 8 instead of 4·d·r.
`checkpoint_bytes(model)` reports the numbers; tests/test_relatives.py checks the file really holds 1 bit
per weight.

Loading gives each matrix a latent weight whose binarisation is exactly the saved Ŵ
(W = μ + σ (s − s̄) / std(s) for the saved signs s), so a loaded adapter computes what the saved one did;
training can resume from it, but the float latent weights themselves are not kept (that is the point).

Differences from the paper / its code: M is any module whose input and output are token features (the
reference puts the adapter beside `norm2 + mlp` and reads the block's residual stream; on a
transformers ViT that is the `mlp` module, which reads `layernorm_after`'s output). No dropout (the
reference: 0.1). Only 1 bit (the reference also has 2-4-bit code books). Not mergeable: the adapter is
non-linear.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import PositiveInt, Target
from ..core.layer import canonical_name
from ..core.tuner import feature_width

CODE = 0.6745  # Φ⁻¹(3/4): the 1-bit code book {−0.6745, +0.6745} for a standardised weight
EPS = 1e-5  # keeps (W − μ) / (σ + ε) finite when σ = 0 (as the reference)
PACKED = ("codes", "mean", "std")  # what a binarised weight becomes on disk


@dataclass
class BinaryAdapterConfig(SwiftConfig):
    """swiftlite's own config; names follow AdapterConfig (`adapter_length` is the reference's `dim`)."""

    swift_type: str = field(default="BINARY_ADAPTER")
    target_modules: Target = None  # modules the adapter runs beside, e.g. r"vit\\.layers\\.\\d+\\.mlp"
    adapter_length: PositiveInt = 32  # bottleneck width r (the reference: 32, or 1)
    scale: float = 1.0  # s (the reference's `scale`, tuned per task; default 1)
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)

    _invalid_examples: ClassVar[dict] = {"target_modules": None, "adapter_length": 0, "scale": "one"}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the modules to run beside, e.g. r'vit\\.layers\\.\\d+\\.mlp'")


def binarize(w: torch.Tensor) -> torch.Tensor:
    """Ŵ = μ + σ · q((W − μ)/σ), with gradients passed straight through q."""
    mu, sigma = w.mean(), w.std()
    z = (w - mu) / (sigma + EPS)
    # q(z) = 0.6745 · sign(z); forward uses q, backward sees the identity (straight-through estimator)
    z_q = z + (CODE * torch.sign(z) - z).detach()
    return mu + sigma * z_q


class BinaryAdapterModule(nn.Module):
    """x -> s · Ŵ_up ReLU(Ŵ_down x), both weights binarised in the forward pass (no biases, as the reference)."""

    def __init__(self, d_in: int, r: int, d_out: int, scale: float, device=None, dtype=None) -> None:
        super().__init__()
        self.down = nn.Linear(d_in, r, bias=False, device=device, dtype=dtype)  # W_down (latent), default init
        self.up = nn.Linear(r, d_out, bias=False, device=device, dtype=dtype)  # W_up (latent)
        nn.init.trunc_normal_(self.up.weight, mean=0.0, std=1e-3, a=-2e-3, b=2e-3)  # the reference's init
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # y = M(x) + s · Ŵ_up ReLU(Ŵ_down x)   (this returns the second term)
        return self.scale * F.linear(F.relu(F.linear(x, binarize(self.down.weight))), binarize(self.up.weight))


class BinaryAdapterLayer(TunerLayer):
    """Wraps a module M; adds every active binary adapter's output to M's output."""

    adapter_attrs = ("binary_adapter",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.binary_adapter = nn.ModuleDict()

    def add_adapter(self, adapter_name: str, config: BinaryAdapterConfig) -> None:
        d_in, d_out = (feature_width(self.base_layer, side) for side in ("in", "out"))
        device, dtype = self._base_device_dtype()
        self.binary_adapter[adapter_name] = BinaryAdapterModule(d_in[0], config.adapter_length, d_out[0], config.scale,
                                                                device, dtype)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.base_layer(x, *args, **kwargs)
        for name in self.active_adapters:
            y = y + self.binary_adapter[name](x).to(y.dtype)
        return y


def pack(w: torch.Tensor) -> dict[str, torch.Tensor]:
    """A latent weight as its packed sign bits of (W − μ), plus μ and σ (what Ŵ needs, nothing more)."""
    w = w.detach().float().cpu()
    mu, sigma = w.mean(), w.std()
    signs = (w - mu).flatten() > 0  # q's sign: bit 1 for +0.6745, 0 for −0.6745
    codes = torch.from_numpy(np.packbits(signs.numpy(), bitorder="little"))  # 8 signs per byte
    return {"codes": codes, "mean": mu.reshape(1), "std": sigma.reshape(1)}


def unpack(packed: dict[str, torch.Tensor], shape: torch.Size) -> torch.Tensor:
    """A latent weight W whose `binarize(W)` is the saved Ŵ: W = μ + σ (s − s̄) / std(s)."""
    n = int(np.prod(shape))
    bits = np.unpackbits(packed["codes"].numpy(), count=n, bitorder="little")
    s = torch.from_numpy(bits.astype(np.float32)) * 2 - 1  # ±1
    mu, sigma = packed["mean"].float().squeeze(), packed["std"].float().squeeze()
    spread = s.std()
    if spread == 0:  # every sign alike: only possible for a constant W, whose Ŵ is μ
        return torch.full(shape, float(mu))
    # mean(W) = μ, std(W) = σ, sign(W − μ) = s: so binarize(W) = μ + σ · 0.6745 · s
    return (mu + sigma * (s - s.mean()) / spread).reshape(shape)


def checkpoint_bytes(weights: dict[str, torch.Tensor]) -> dict[str, int]:
    """{"packed": bytes of the tensors as saved, "float32": bytes the same adapter takes unpacked}."""
    packed = sum(t.numel() * t.element_size() for t in weights.values())
    codes = sum(t.numel() for k, t in weights.items() if k.endswith(".codes"))
    rest = sum(t.numel() * t.element_size() for k, t in weights.items() if not k.endswith((".codes", ".mean", ".std")))
    return {"packed": packed, "float32": codes * 8 * 4 + rest}


@register_tuner
class BinaryAdapterTuner(Tuner):
    """Wraps each matched module; the checkpoint holds 1 bit per adapter weight."""

    config_class = BinaryAdapterConfig
    layer_class = BinaryAdapterLayer
    identity_at_init = False  # the reference initialises W_up ~ N(0, 1e-3²), not 0 (σ = 0 has no gradient)
    not_mergeable_reason = "the adapter is a ReLU bottleneck beside the module; it has no weight to fold into"

    @classmethod
    def check(cls, model: nn.Module, config: BinaryAdapterConfig, names: list[str]) -> None:
        for name in names:
            module = model.get_submodule(name)
            if feature_width(module, "in") is None or feature_width(module, "out") is None:
                raise ValueError(f"BinaryAdapterConfig.target_modules: {name!r} ({type(module).__name__}) has no "
                                 f"Linear layer that tells its feature width; target a module such as an MLP block")

    @classmethod
    def to_saved_state(cls, model: nn.Module, config: BinaryAdapterConfig, weights: dict[str, Any], adapter_name: str
                       ) -> dict[str, Any]:
        out = {}
        for key, value in weights.items():
            if ".binary_adapter." in key and key.endswith(".weight"):
                out.update({f"{key}.{part}": t for part, t in pack(value).items()})
            else:
                out[key] = value  # modules_to_save copies stay as they are
        return out

    @classmethod
    def from_saved_state(cls, model: nn.Module, config: BinaryAdapterConfig, weights: dict[str, Any], adapter_name: str
                         ) -> dict[str, Any]:
        shapes = {canonical_name(model, n): p.shape for n, p in model.named_parameters()}
        out = {k: v for k, v in weights.items() if not k.endswith(tuple("." + p for p in PACKED))}
        for saved in {k.rsplit(".", 1)[0] for k in weights if k.endswith(".codes")}:
            # the checkpoint may name the adapter differently (from_pretrained(adapter_name={saved: new}))
            layer, _, rest = saved.partition(".binary_adapter.")
            key = f"{layer}.binary_adapter.{adapter_name}.{rest.split('.', 1)[1]}"
            if key not in shapes:
                raise ValueError(f"binary adapter checkpoint: {saved!r} is not a weight of this model's adapter "
                                 f"{adapter_name!r} (a different base model or target_modules?)")
            out[key] = unpack({p: weights[f"{saved}.{p}"] for p in PACKED}, shapes[key])
        return out
