"""LoRA: Low-Rank Adaptation of Large Language Models (Hu et al., 2021, arXiv:2106.09685).

A frozen weight W0 gets a trainable low-rank update::

    h = W0 x + s · B A x        A ∈ R^{r×d_in}, B ∈ R^{d_out×r}, B = 0 at init, s = alpha / r

so the model is unchanged at initialisation, and `W0 + s·B A` can be merged into W0 for inference
at no extra cost. The same update is put on nn.Linear (here), and in `lora_layers.py` on
transformers' Conv1D (GPT-2, weight stored transposed), nn.Conv2d (A: a conv with W0's
kernel/stride/padding to r channels, B: a 1×1 conv) and nn.Embedding (A: r×num_embeddings looked up
with F.embedding, B: embedding_dim×r); in `quantized.py` on quantized linear layers of
bitsandbytes, torchao and hqq (QLoRA: W0 stored quantized, A and B in full precision).

Options, each one line of math:
- rsLoRA (Kalajdzievski, 2023, arXiv:2312.03732): s = alpha / sqrt(r).
- DoRA (Liu et al., 2024, arXiv:2402.09353): W' = m · (W0 + s·BA) / ||W0 + s·BA||_c, with m a
  trainable magnitude per output feature initialised to ||W0||_c and the norm detached (§4.3).
- LoRA+ (Hayou et al., 2024, arXiv:2402.12354): B learns with lr · `lorap_lr_ratio` (`lora_plus.py`).
- PEFT's `rank_pattern` / `alpha_pattern`: per-module r and alpha (`LoRAConfig.for_module`).
Elsewhere: ms-swift's `use_merged_linear` / `enable_lora` (LoRA on chosen chunks of a fused qkv
layer) in `lora_merged.py`; PEFT's `add_weighted_adapter` ("linear", "svd") in `lora_weighted.py`.

Parameter names follow PEFT (`lora_A.<adapter>.weight`, `lora_embedding_A.<adapter>`,
`lora_magnitude_vector.<adapter>.weight`), so PEFT checkpoints convert by renaming keys only
(`LoRATuner.peft_spec` in `tuner.py`; the conversion itself is `core/peft_format.py`).

Differences from the paper and PEFT: Embedding LoRA initialises B = 0 and A ~ N(0, 1) (PEFT: A = 0,
B ~ N(0, 1)); the product is zero either way. A Conv2d's A also copies W0's dilation (PEFT's does not).
Unmerging restores the pre-merge weight exactly, in any order, DoRA included (PEFT subtracts ΔW
again, which for DoRA out of order is approximate). Not supported: QA-LoRA, grouped convolutions, PEFT's initialisations that change W0 (PiSSA, OLoRA, LoftQ...),
and the PEFT fields in `PEFT_UNSUPPORTED` (a checkpoint that sets one is refused, not loaded approximately).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...core import SwiftConfig, TunerLayer
from ...core.config import PositiveFloat, PositiveInt, Probability, Target
from ...core.layer import check_finite
from ...core.peft_format import bad_pattern_key, pattern_value
from ...kernels.routes import lora_kernel_route

# PEFT LoraConfig fields swiftlite does not implement, with the value at which that is exact: a checkpoint
# (ms-swift's or PEFT's) setting one to anything else is refused, never silently computed otherwise.
PEFT_UNSUPPORTED = {"lora_bias": False, "layers_to_transform": None, "exclude_modules": None, "use_qalora": False,
                    "target_parameters": None, "trainable_token_indices": None, "layer_replication": None,
                    "alora_invocation_tokens": None, "arrow_config": None}

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


@dataclass
class LoRAConfig(SwiftConfig):
    """Field names and defaults follow ms-swift's `LoRAConfig` (which extends PEFT's `LoraConfig`)."""

    swift_type: str = field(default="LORA")
    r: PositiveInt = 8  # rank of the update
    target_modules: Target = None  # regex (full match) or list of names / dotted suffixes
    lora_alpha: float = 8  # scaling = lora_alpha / r
    lora_dropout: Probability = 0.0  # dropout on the input of A
    fan_in_fan_out: bool = False  # kept for PEFT configs; Conv1D (weight stored (in, out)) is detected by type
    bias: str = "none"  # LoRA trains no bias
    use_rslora: bool = False  # rsLoRA: scaling = lora_alpha / sqrt(r)
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)
    init_lora_weights: bool | str = True  # True: B = 0 (identity at init); 'gaussian': also A ~ N(0, 1/r²); False: random B (tests)
    use_dora: bool = False  # DoRA: learn a magnitude vector as well
    use_qa_lora: bool = False  # QA-LoRA needs quantized layers: not supported here
    use_merged_linear: bool = False  # ms-swift's MergedLinear: LoRA on some chunks of a fused (qkv) layer
    enable_lora: list[bool] | None = None  # with use_merged_linear: one bool per equal output chunk, e.g. [True, False, True]
    lora_dtype: str | None = None  # None: same dtype as the base layer; else 'float32', 'bfloat16', ...
    lorap_lr_ratio: PositiveFloat | None = None  # LoRA+: lr(B) = ratio · lr(A); None: plain LoRA (opt-in; ms-swift: 16.0)
    lorap_emb_lr: PositiveFloat = 1e-6  # LoRA+: lr of embedding A/B
    rank_pattern: dict[str, PositiveInt] = field(default_factory=dict)  # PEFT's: {regex: r} for modules whose name ends with a match
    alpha_pattern: dict[str, float] = field(default_factory=dict)  # PEFT's: {regex: lora_alpha}, matched the same way

    _invalid_examples: ClassVar[dict] = {"r": 0, "lora_dropout": 1.5, "target_modules": None, "bias": "all",
                                         "lora_dtype": "int8", "enable_lora": [], "lorap_lr_ratio": -1.0,
                                         "rank_pattern": {"v_proj": 0}, "alpha_pattern": {"(": 2.0}}
    _unsupported_fields: ClassVar[dict] = PEFT_UNSUPPORTED

    def validate(self) -> None:  # (r, lora_dropout, lorap_lr_ratio: checked from their type hints)
        self._require(self.target_modules is not None, "target_modules",
                      "is required: a regex such as r'.*(q_proj|v_proj)' or a list such as ['q_proj', 'v_proj']")
        self._require(self.bias == "none", "bias", f"only 'none' is supported, got {self.bias!r}")
        self._require(self.init_lora_weights in (True, False, "gaussian"), "init_lora_weights",
                      f"True (B = 0), 'gaussian' (B = 0, A ~ N(0, 1/r²)) or False (random B) are supported, "
                      f"got {self.init_lora_weights!r}")
        self._require(self.lora_dtype is None or self.lora_dtype in _DTYPES, "lora_dtype",
                      f"None or one of {sorted(_DTYPES)}, got {self.lora_dtype!r}")
        chunks = self.enable_lora
        if self.use_merged_linear:
            self._require(isinstance(chunks, (list, tuple)) and any(chunks), "enable_lora",
                          f"use_merged_linear=True needs a list with a bool per output chunk (e.g. [True, False, True] "
                          f"for q, k, v) and at least one True; got {chunks!r}")
        self._require(chunks is None or self.use_merged_linear, "enable_lora", "only applies with use_merged_linear=True")
        self._require(not self.use_qa_lora, "use_qa_lora", "QA-LoRA needs quantized layers; not supported by swiftlite")
        for name in ("rank_pattern", "alpha_pattern"):
            problem = bad_pattern_key(getattr(self, name))
            self._require(problem is None, name, problem)

    def for_module(self, name: str) -> "LoRAConfig":
        """This config with the `r` / `lora_alpha` that `rank_pattern` / `alpha_pattern` give module
        `name` (PEFT's matching rule: `peft_format.pattern_value`); no match keeps r / lora_alpha."""
        r = pattern_value(self.rank_pattern, name, self.r)
        alpha = pattern_value(self.alpha_pattern, name, self.lora_alpha)
        if (r, alpha) == (self.r, self.lora_alpha):
            return self
        return dataclasses.replace(self, r=r, lora_alpha=alpha)


class _Magnitude(nn.Module):
    """DoRA's magnitude vector m; a module so the parameter is named `...<adapter>.weight` as in PEFT."""

    def __init__(self, m: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(m)


class LoRALayer(TunerLayer):
    """The forward, merging and DoRA, written once on ΔW = s·B A. A subclass says how A and B are
    built (`make_factors`), applied (`apply_A`, `apply_B`: only Embedding differs) and laid out as
    matrices (`factors_of`, `to_weight_layout`), and where W0's output features sit (`out_axis`)."""

    adapter_attrs = ("lora_A", "lora_B", "lora_dropout", "lora_magnitude_vector")
    out_axis: ClassVar[int] = 0  # axis of W0 indexing output features (Linear (out, in): 0)
    embedding: ClassVar[bool] = False  # token ids in: no dropout, factors are bare parameters
    mergeable = True
    keep_pre_merge = True  # unmerge puts W0 back exactly, in any order (core/layer.py): W0 + ΔW - ΔW != W0 in floats

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        for attr in self.adapter_attrs:  # lora_A/lora_B: ModuleDict; lora_embedding_A/B: ParameterDict
            setattr(self, attr, nn.ParameterDict() if attr.startswith("lora_embedding") else nn.ModuleDict())
        self.scaling: dict[str, float] = {}
        self.use_dora: dict[str, bool] = {}

    def add_adapter(self, adapter_name: str, config: LoRAConfig) -> None:
        device, dtype = self._base_device_dtype()
        dtype = _DTYPES[config.lora_dtype] if config.lora_dtype else dtype
        A, B = self.make_factors(config, device, dtype)  # built fully before anything is stored
        a, b = self.factors_of(A, B)
        if self.embedding:
            nn.init.normal_(a)
        elif config.init_lora_weights == "gaussian":
            nn.init.normal_(a, std=1 / config.r)  # PEFT's "gaussian"
        else:
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))  # as nn.Linear's default init
        if config.init_lora_weights is False:
            nn.init.normal_(b, std=0.02)  # only for tests: the adapter then changes the output
        else:
            nn.init.zeros_(b)  # B = 0: h = W0 x at init
        scaling = config.lora_alpha / (math.sqrt(config.r) if config.use_rslora else config.r)
        self.attr_A[adapter_name], self.attr_B[adapter_name] = A, B
        use_dropout = config.lora_dropout and not self.embedding  # token ids get no dropout (as in PEFT)
        self.lora_dropout[adapter_name] = nn.Dropout(config.lora_dropout) if use_dropout else nn.Identity()
        self.scaling[adapter_name], self.use_dora[adapter_name] = scaling, config.use_dora
        if config.use_dora:  # m = ||W0 + s·BA||_c  (== ||W0||_c when B = 0)
            m = self._column_norm(self._adapted_weight(adapter_name)).detach()
            self.lora_magnitude_vector[adapter_name] = _Magnitude(m.to(dtype))

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.scaling.pop(adapter_name, None)
        self.use_dora.pop(adapter_name, None)

    @property
    def adapter_names(self) -> list[str]:
        return list(self.scaling)  # one entry per adapter; faster than scanning the containers each forward

    # ---- the forward ---------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        kernel = lora_kernel_route(self, x)  # a mixed-adapter batch, or the opt-in fused path (swiftlite/kernels/)
        if kernel is not None:
            return kernel(self, x, *args, **kwargs)
        h = self.base_layer(x, *args, **kwargs)  # W0 x + b
        for name in self.active_adapters:
            s, x_d = self.scaling[name], self.lora_dropout[name](x)  # x̃ = dropout(x)
            BAx = self.apply_B(name, self.apply_A(name, x_d))  # B A x̃
            BAx = BAx if BAx.dtype == h.dtype else BAx.to(h.dtype)  # lora_dtype may differ from the base's
            if not self.use_dora[name]:
                # h = W0 x + s · B A x
                h = h + BAx * s
            else:
                m, norm = self.lora_magnitude_vector[name].weight, self._column_norm(self._adapted_weight(name))
                f = m / norm.detach()  # f = m / ||W0 + s·BA||_c
                # DoRA: h = W0 x + b + (f - 1) · W0 x̃ + f · s·B A x̃     (= b + f·(W0 + s·BA) x without dropout)
                h = h + (f - 1) * self.base_forward_no_bias(x_d) + f * (BAx * s)
        return h

    # ---- A and B (Linear, Conv1D and Conv2d: A and B are layers; Embedding overrides) -------------
    @property
    def attr_A(self) -> nn.ModuleDict | nn.ParameterDict:
        return getattr(self, self.adapter_attrs[0])

    @property
    def attr_B(self) -> nn.ModuleDict | nn.ParameterDict:
        return getattr(self, self.adapter_attrs[1])

    def apply_A(self, name: str, x: torch.Tensor) -> torch.Tensor:
        A = self.lora_A[name]
        return A(x.to(A.weight.dtype))  # (..., r) (a conv: (B, r, H', W'))

    def apply_B(self, name: str, z: torch.Tensor) -> torch.Tensor:
        return self.lora_B[name](z)  # (..., d_out)

    def factors_of(self, A: Any, B: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """A, B as matrices (r, d_in·k) and (d_out, r) (views of the parameters)."""
        return A.weight.flatten(1), B.weight.flatten(1)

    def factors(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        return self.factors_of(self.attr_A[name], self.attr_B[name])

    def to_weight_layout(self, delta: torch.Tensor) -> torch.Tensor:
        """(d_out, d_in·k) -> the layout of W0."""
        return delta.view(self.base_layer.weight.shape)

    def delta_weight(self, adapter_name: str) -> torch.Tensor:
        A, B = self.factors(adapter_name)
        # ΔW = s · B A        (d_out, d_in·k), then in W0's layout
        return self.to_weight_layout(self.scaling[adapter_name] * B @ A)

    def _adapted_weight(self, adapter_name: str) -> torch.Tensor:
        """W0 + s·BA with ΔW detached (DoRA's norm never back-propagates, §4.3)."""
        W = self.base_layer.weight
        return W + self.delta_weight(adapter_name).detach().to(W.dtype)

    def _column_norm(self, weight: torch.Tensor) -> torch.Tensor:
        """||W||_c: the L2 norm of each output feature's weights, shaped like DoRA's m (as PEFT does)."""
        return weight.norm(p=2, dim=[d for d in range(weight.dim()) if d != self.out_axis])  # (d_out,)

    def _along_out_axis(self, v: torch.Tensor, ndim: int) -> torch.Tensor:
        return v.reshape([-1 if d == self.out_axis else 1 for d in range(ndim)])

    # ---- merging ---------------------------------------------------------------------------------
    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        W = self.base_layer.weight
        merged = W.data + self.delta_weight(adapter_name).detach().to(W.dtype)  # W0 + s·BA
        if adapter_name in self.lora_magnitude_vector:
            m = self.lora_magnitude_vector[adapter_name].weight.detach().reshape(-1).to(W.dtype)
            factor = self._along_out_axis(m / self._column_norm(merged).reshape(-1), W.dim())
            merged = factor * merged  # m · (W0 + s·BA) / ||W0 + s·BA||_c
        if safe_merge:
            check_finite(merged, f"LoRA adapter {adapter_name!r}")
        W.data = merged


class LoRALinear(LoRALayer):
    def dims(self) -> tuple[int, int]:
        return self.base_layer.in_features, self.base_layer.out_features

    def make_factors(self, config: LoRAConfig, device: torch.device, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
        (d_in, d_out), r = self.dims(), config.r
        return (nn.Linear(d_in, r, bias=False, device=device, dtype=dtype),
                nn.Linear(r, d_out, bias=False, device=device, dtype=dtype))

    def base_forward_no_bias(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.base_layer.weight)
