"""LoRA on a quantized base layer (QLoRA: Dettmers et al., 2023, arXiv:2305.14314).

The frozen weight is stored quantized, Q(W0); the adapter stays in full precision::

    h = Q(W0) x + s · B A x        the quantized layer computes Q(W0) x (it dequantizes on the fly);
                                    A, B: float32 (the layer's compute dtype), B = 0 at init

so the forward is `LoRALayer.forward` unchanged: only building A, B (in the compute dtype, not the
storage dtype uint8 / int8) and merging differ. Merging cannot add ΔW to packed integers::

    Q(W0) <- Q( deq(Q(W0)) + s·B A )          dequantize, add, quantize again

which rounds ΔW to the quantization grid: the merged layer is close to, not equal to, the unmerged one
(a warning says so; `tests/test_quantized.py` measures by how much). Unmerging puts the layer from before
the merge back exactly (it is kept), instead of subtracting ΔW and rounding a second time.

The backends, each one real library's layer (`BACKENDS`: how to recognise it, dequantize it and build
the same kind of layer from a dense weight):
- bitsandbytes `Linear4bit` (NF4 / FP4, optional double quantization) and `Linear8bitLt` (LLM.int8);
- torchao: an nn.Linear whose weight is torchao's int8 weight-only tensor (`Int8WeightOnlyConfig`,
  or `IntxWeightOnlyConfig` with int8 or int4 values);
- hqq `HQQLinear` (1 to 8 bits, group-wise scale and zero point).

Differences from PEFT (`peft/tuners/lora/{bnb,torchao,hqq}.py`): one class for every backend instead of
one per backend; unmerge restores the pre-merge layer exactly (PEFT dequantizes, subtracts ΔW and
quantizes again); DoRA on a quantized base is refused (PEFT supports it); merging a torchao int4 weight
works here only for `IntxWeightOnlyConfig` (PEFT refuses int4; torchao's `Int4WeightOnlyConfig` does not
run on this CPU build, see README).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from ...core.layer import check_finite
from .lora import LoRAConfig, LoRALinear


@dataclass(frozen=True)
class QuantBackend:
    """How swiftlite handles one library's quantized linear layer."""

    name: str  # 'bnb-4bit', 'bnb-8bit', 'torchao', 'hqq'
    matches: Callable[[nn.Module], bool]
    dequantize: Callable[[nn.Module], torch.Tensor]  # -> deq(Q(W)) as float32 (d_out, d_in)
    requantize: Callable[[nn.Module, torch.Tensor], nn.Module]  # (layer, dense W) -> a new layer of the same kind
    keep_layout: Callable[[nn.Module], None] | None = None  # keeps the stored layout that `dequantize` reads


def _with_weight(layer: nn.Module, weight: nn.Parameter) -> nn.Module:
    """A shallow copy of `layer` (bias and settings shared) holding `weight`; `layer` is left as it was."""
    new = copy.copy(layer)
    new._parameters = dict(layer._parameters)
    new._buffers, new._modules = dict(layer._buffers), dict(layer._modules)
    new._parameters["weight"] = weight
    return new


# ---- bitsandbytes -----------------------------------------------------------------------------------
def _bnb():
    import bitsandbytes as bnb  # optional: `pip install swiftlite[quant]`

    return bnb


def _is_bnb(kind: str) -> Callable[[nn.Module], bool]:
    def matches(module: nn.Module) -> bool:
        bnb = _bnb()
        return isinstance(module, getattr(bnb.nn, kind))
    return matches


def bnb4_keep_layout(layer: nn.Module) -> None:
    """Turn off bitsandbytes' repacking of a 4-bit weight for its AVX512-BF16 CPU kernel. Linear4bit.forward
    repacks `weight.data` in place on the first eval-mode, no-grad call on such a CPU (and stores double-
    quantized absmax in float32 again); the repacking fails when in_features is not a multiple of the block
    size (llama-tiny's down_proj: 352 = 5.5 · 64, "shape '[128, 5]' is invalid for input of size 704"), and
    `dequantize_4bit` cannot read the repacked layout. The standard layout computes the same product."""
    layer.support_avx512bf16_for_cpu = False


def _bnb4_dequantize(layer: nn.Module) -> torch.Tensor:
    w = layer.weight  # Params4bit: packed uint8, 2 values a byte, + quant_state (absmax per block, code book)
    return _bnb().functional.dequantize_4bit(w.data, w.quant_state).float()


def _bnb4_requantize(layer: nn.Module, W: torch.Tensor) -> nn.Module:
    w = layer.weight
    new = _bnb().nn.Params4bit(W.detach().to("cpu", w.quant_state.dtype), requires_grad=False, blocksize=w.blocksize,
                               compress_statistics=w.compress_statistics, quant_type=w.quant_type,
                               quant_storage=w.quant_storage)
    new_layer = _with_weight(layer, new.to(w.device))  # .to(device) is where bitsandbytes quantizes
    bnb4_keep_layout(new_layer)
    return new_layer


def _bnb8_dequantize(layer: nn.Module) -> torch.Tensor:
    w = layer.weight  # Int8Params: int8 values CB + one absmax per row SCB (in layer.state after a forward)
    SCB = w.SCB if getattr(w, "SCB", None) is not None else layer.state.SCB
    # W ≈ CB · SCB / 127
    return _bnb().functional.int8_vectorwise_dequant(w.data, SCB).float()


def _bnb8_requantize(layer: nn.Module, W: torch.Tensor) -> nn.Module:
    bnb = _bnb()  # a new layer: Linear8bitLt keeps CB / SCB in its own `state`, which must not be shared
    new = bnb.nn.Linear8bitLt(layer.in_features, layer.out_features, bias=False, has_fp16_weights=False,
                              threshold=layer.state.threshold, device="meta")
    new.weight = bnb.nn.Int8Params(W.detach().to("cpu", torch.float16), requires_grad=False, has_fp16_weights=False)
    new.bias = layer.bias
    return new.to(layer.weight.device).train(layer.training)  # .to(device) is where bitsandbytes quantizes


# ---- torchao ----------------------------------------------------------------------------------------
def _torchao_matches(module: nn.Module) -> bool:
    from torchao.utils import TorchAOBaseTensor

    return isinstance(module, nn.Linear) and isinstance(module.weight, TorchAOBaseTensor)


def _torchao_config(weight: torch.Tensor) -> Any:
    """The torchao config that made `weight`, read back from its type (needed to quantize again)."""
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup

    kind = type(weight).__name__
    if kind == "Int8Tensor" and getattr(weight, "act_quant_kwargs", None) is None:
        return Int8WeightOnlyConfig()
    if kind == "IntxUnpackedToInt8Tensor" and getattr(weight, "activation_quantization", None) is None:
        return IntxWeightOnlyConfig(weight_dtype=weight.target_dtype, granularity=PerGroup(weight.block_size[-1]))
    raise NotImplementedError(f"merging into a torchao {kind} weight is not supported: only weight-only int8 "
                              f"(Int8WeightOnlyConfig) and IntxWeightOnlyConfig can be quantized again here")


def _torchao_dequantize(layer: nn.Module) -> torch.Tensor:
    return layer.weight.dequantize().float()


def _torchao_requantize(layer: nn.Module, W: torch.Tensor) -> nn.Module:
    from torchao.quantization import quantize_

    config = _torchao_config(layer.weight)
    holder = nn.Sequential(nn.Linear(layer.in_features, layer.out_features, bias=False, device="meta"))
    holder[0].weight = nn.Parameter(W.detach().to(layer.weight.dtype), requires_grad=False)
    quantize_(holder, config)
    return _with_weight(layer, holder[0].weight)


# ---- hqq --------------------------------------------------------------------------------------------
def _hqq_matches(module: nn.Module) -> bool:
    from hqq.core.quantize import HQQLinear

    return isinstance(module, HQQLinear)


def _hqq_dequantize(layer: nn.Module) -> torch.Tensor:
    return layer.dequantize().float()


def _hqq_requantize(layer: nn.Module, W: torch.Tensor) -> nn.Module:
    from hqq.core.quantize import HQQLinear

    config = {**copy.deepcopy(layer.quant_config), "offload_meta": layer.offload_meta}  # HQQLinear pops it
    new = HQQLinear(None, config, compute_dtype=layer.compute_dtype, device=layer.device)
    config.pop("offload_meta")
    new.quantize(W.detach().to(layer.compute_dtype), **config)
    new.bias = layer.bias
    return new


def _available(module_name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module_name) is not None


BACKENDS: tuple[tuple[str, QuantBackend], ...] = (  # (import name, backend)
    ("bitsandbytes", QuantBackend("bnb-4bit", _is_bnb("Linear4bit"), _bnb4_dequantize, _bnb4_requantize,
                                     bnb4_keep_layout)),
    ("bitsandbytes", QuantBackend("bnb-8bit", _is_bnb("Linear8bitLt"), _bnb8_dequantize, _bnb8_requantize)),
    ("torchao", QuantBackend("torchao", _torchao_matches, _torchao_dequantize, _torchao_requantize)),
    ("hqq", QuantBackend("hqq", _hqq_matches, _hqq_dequantize, _hqq_requantize)),
)


def backend_of(module: nn.Module) -> QuantBackend | None:
    """The backend whose quantized layer `module` is (None: not a quantized layer, or the library is absent).
    A library is only consulted once it has been imported (a quantized layer cannot exist before that)."""
    import sys

    for package, backend in BACKENDS:
        if package in sys.modules and backend.matches(module):
            return backend
    return None


def quantized_types() -> tuple[type, ...]:
    """The quantized layer classes of the libraries already imported (hqq's HQQLinear is no nn.Linear)."""
    import sys

    return (sys.modules["hqq.core.quantize"].HQQLinear,) if "hqq.core.quantize" in sys.modules else ()


class LoRAQuantizedLinear(LoRALinear):
    """h = Q(W0) x + s · B A x: full-precision A, B beside any backend's quantized linear layer."""

    keep_pre_merge = False  # `merge` keeps the whole pre-merge layer itself (its tensors cannot be copied back)
    merges_quantized = True  # dequantize, add, quantize again

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.backend = backend_of(base_layer)
        if self.backend is None:
            raise TypeError(f"{type(base_layer).__name__} is not a quantized layer swiftlite knows "
                            f"({', '.join(b.name for _, b in BACKENDS)})")
        if self.backend.keep_layout is not None:
            self.backend.keep_layout(base_layer)
        self._before_merge: dict[str, nn.Module] = {}  # adapter -> the quantized layer before it was merged

    def _base_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        """A and B live in the compute dtype (float32 on the CPU), never in the storage dtype (uint8, int8)."""
        base = self.base_layer
        tensors = [*base.parameters(), *base.buffers()]
        device = tensors[0].device if tensors else torch.device("cpu")
        weight = getattr(base, "weight", None)  # torchao: a tensor subclass that reports its compute dtype
        stored = weight.dtype if weight is not None and weight.is_floating_point() else torch.float32
        return device, getattr(base, "compute_dtype", None) or stored

    def dims(self) -> tuple[int, int]:
        return self.base_layer.in_features, self.base_layer.out_features

    def to_weight_layout(self, delta: torch.Tensor) -> torch.Tensor:
        return delta  # (d_out, d_in), the layout `dequantized_weight` returns (the stored one is packed)

    def add_adapter(self, adapter_name: str, config: LoRAConfig) -> None:
        if config.use_dora:
            raise ValueError(f"LoRAConfig.use_dora: DoRA on a quantized base ({self.backend.name}) is not supported "
                             f"by swiftlite; set use_dora=False or target full-precision layers")
        super().add_adapter(adapter_name, config)

    def dequantized_weight(self) -> torch.Tensor:
        """deq(Q(W0)): the weight the quantized layer actually multiplies by, (d_out, d_in) float32."""
        return self.backend.dequantize(self.base_layer)

    # ---- merging: dequantize, add, quantize again ----------------------------------------------------
    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        W = self.dequantized_weight()
        # Q(W0) <- Q( deq(Q(W0)) + s·B A )
        merged = W + self.delta_weight(adapter_name).detach().to(W.device, W.dtype)
        if safe_merge:
            check_finite(merged, f"LoRA adapter {adapter_name!r}")
        new_base = self.backend.requantize(self.base_layer, merged)  # built before anything is replaced
        warnings.warn(f"merging LoRA adapter {adapter_name!r} into a quantized {self.backend.name} layer rounds "
                      f"W0 + ΔW to the quantization grid: the merged model differs slightly from the adapter's "
                      f"output (merge into the full-precision base for an exact merge)", UserWarning, stacklevel=3)
        self._before_merge[adapter_name] = self.base_layer
        self.base_layer = new_base

    def unmerge(self, adapter_name: str) -> None:
        """Put back the quantized layer from before `adapter_name` was merged, then merge again the
        adapters merged after it (the core removes `adapter_name` from `merged_adapters` afterwards)."""
        later = self.merged_adapters[self.merged_adapters.index(adapter_name) + 1:]
        self.base_layer = self._before_merge.pop(adapter_name)
        for name in later:
            self._before_merge.pop(name, None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self.merge(name, safe_merge=False)
