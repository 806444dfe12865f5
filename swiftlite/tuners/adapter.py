"""Adapter: Parameter-Efficient Transfer Learning for NLP (Houlsby et al., 2019, arXiv:1902.00751).

A small bottleneck MLP is added *after* a frozen module, with a residual connection::

    h = x + W_2 · act(W_1 · x + b_1) + b_2       W_1 ∈ R^{m×d}, W_2 ∈ R^{d×m}, m = adapter_length

where x is the module's output (or, for a tuple/dict output, the element `hidden_pos` of it). In ms-swift
terms the adapter hooks the method `method_name` (default `forward`) of every matched module: the method
runs unchanged, then its output goes through the adapter. Hooking another method is how one reaches a
point inside a module, e.g. `BertLayer.feed_forward_chunk` (the FFN sub-layer, where Houlsby put it).

Differences from the paper / from ms-swift:
- `init_weights="identity"` (default): W_2 and b_2 start at zero, so the model is exactly unchanged at
  injection (the paper uses a near-zero init for the same purpose). `init_weights="xavier"` is ms-swift's
  init, to reproduce its numbers: W_1 and W_2 ~ Xavier-uniform, b_1 and b_2 ~ N(0, 1e-12), drawn in that
  order, so the adapter does not start as the identity.
- The paper inserts the adapter before the layer norm of each sub-layer; here it sits wherever
  `target_modules` / `method_name` point (e.g. `BertOutput` output is after its LayerNorm).
- `hidden_pos=None` (ms-swift has no default) means "the output if it is a tensor, else its first element".

Structure and checkpoints as in ms-swift: adapter `<name>` is the submodule `adapter_<name>` of the target
(an `AdapterModule` with `linear1`, `act`, `linear2`), so its weights are saved as
`<target>.adapter_<name>.linear1.weight` and load into ms-swift, and ms-swift's into swiftlite, unchanged.

Not mergeable: the adapter is a non-linear MLP, it cannot be folded into the frozen weights.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Index, PositiveInt, Target
from ..core.tuner import check_output_position, feature_width, probe_outputs, said_by
from ..core.modules import apply_to_hidden, innermost_base_layer

# ms-swift takes `act_layer` from transformers' ACT2CLS; these are the same functions in plain torch.
ACTIVATIONS = {
    "gelu": nn.GELU,
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


ADAPTER_INITS = ("identity", "xavier")  # see AdapterConfig.init_weights


@dataclass
class AdapterConfig(SwiftConfig):
    """Field names and defaults follow ms-swift's `AdapterConfig`."""

    swift_type: str = field(default="ADAPTER")
    dim: PositiveInt | None = None  # hidden size d of the hooked output (required: it sizes W_1 and W_2)
    target_modules: Target = None  # regex (full match) or list of names / dotted suffixes
    hidden_pos: Index | str | None = None  # which element of a tuple (int) / dict (str key) output to adapt
    method_name: str = "forward"  # the method of the target module whose output is adapted
    adapter_length: PositiveInt = 128  # bottleneck width m (ms-swift default)
    act_layer: str = "gelu"  # non-linearity between W_1 and W_2 (Houlsby et al. use a GELU-like one)
    init_weights: str = "identity"  # "identity": W_2 = 0, b_2 = 0 (unchanged model); "xavier": ms-swift's init

    _invalid_examples: ClassVar[dict] = {"dim": 0, "adapter_length": -1, "act_layer": "nope", "target_modules": None,
                                         "init_weights": "zeros"}

    def validate(self) -> None:
        self._require(isinstance(self.dim, int) and self.dim > 0, "dim",
                      f"must be the positive hidden size of the adapted output (e.g. 768), got {self.dim!r}")
        self._require(self.target_modules is not None, "target_modules",
                      "is required: a regex such as r'.*layer\\.\\d+\\.output' or a list of module names")
        self._require(isinstance(self.adapter_length, int) and self.adapter_length > 0, "adapter_length",
                      f"must be a positive int, got {self.adapter_length!r}")
        self._require(self.act_layer in ACTIVATIONS, "act_layer",
                      f"{self.act_layer!r} is unknown; choose one of {sorted(ACTIVATIONS)}")
        self._require(isinstance(self.method_name, str) and self.method_name.isidentifier(), "method_name",
                      f"must be a method name such as 'forward' or 'feed_forward_chunk', got {self.method_name!r}")
        self._require(self.hidden_pos is None or isinstance(self.hidden_pos, (int, str)), "hidden_pos",
                      f"must be None, an int index or a str key, got {self.hidden_pos!r}")
        self._require(self.init_weights in ADAPTER_INITS, "init_weights",
                      f"must be one of {list(ADAPTER_INITS)}, got {self.init_weights!r}")


class AdapterModule(nn.Module):
    """The bottleneck `x + linear2(act(linear1(x)))` (names as in ms-swift's `AdapterModule`)."""

    def __init__(self, dim: int, adapter_length: int, act_layer: str, device=None, dtype=None,
                 init_weights: str = "identity") -> None:
        super().__init__()
        self.linear1 = nn.Linear(dim, adapter_length, device=device, dtype=dtype)  # W_1: d -> m
        self.act = ACTIVATIONS[act_layer]()
        self.linear2 = nn.Linear(adapter_length, dim, device=device, dtype=dtype)  # W_2: m -> d
        nn.init.xavier_uniform_(self.linear1.weight)
        nn.init.normal_(self.linear1.bias, std=1e-6)
        if init_weights == "xavier":  # ms-swift: both layers alike, so the adapter starts non-identity
            nn.init.xavier_uniform_(self.linear2.weight)
            nn.init.normal_(self.linear2.bias, std=1e-6)
        else:
            nn.init.zeros_(self.linear2.weight)  # W_2 = 0 and b_2 = 0: identity at init
            nn.init.zeros_(self.linear2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.to(self.linear1.weight.dtype)
        # h = x + W_2 · act(W_1 · x + b_1) + b_2
        h = h + self.linear2(self.act(self.linear1(h)))
        return h.to(x.dtype)


class AdapterLayer(TunerLayer):
    """Wraps a module; adapts the output of its `method_name` with every active adapter, in order."""

    adapter_prefixes = ("adapter_",)  # adapter <name> is the child `adapter_<name>`, as in ms-swift

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.hidden_pos: dict[str, int | str | None] = {}
        self.method_name: str | None = None
        self._original_method = None

    def add_adapter(self, adapter_name: str, config: AdapterConfig) -> None:
        if self.method_name is None:
            self.method_name = config.method_name
            if config.method_name != "forward":
                _check_method(self.base_layer, config.method_name, type(self.base_layer).__name__)
                # The base calls `self.<method>()` from inside its own forward, which a wrapper cannot see:
                # route that attribute through this layer (undone in `unwrap`).
                self._original_method = getattr(self.base_layer, config.method_name)
                setattr(self.base_layer, config.method_name, _MethodHook(self))
        elif config.method_name != self.method_name:
            raise ValueError(f"AdapterConfig.method_name: this module already hooks {self.method_name!r}; "
                             f"a second adapter on it must hook the same method, got {config.method_name!r}")
        device, dtype = self._base_device_dtype()
        module = AdapterModule(config.dim, config.adapter_length, config.act_layer, device, dtype,
                               init_weights=config.init_weights)
        self.add_adapter_module("adapter_", adapter_name, module)
        self.hidden_pos[adapter_name] = config.hidden_pos

    def adapter(self, adapter_name: str) -> AdapterModule:
        """The bottleneck MLP of `adapter_name` (the child `adapter_<name>`)."""
        return self._modules["adapter_" + adapter_name]

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self.hidden_pos.pop(adapter_name, None)

    def unwrap(self) -> nn.Module:
        if self._original_method is not None:
            delattr(self.base_layer, self.method_name)  # drop the instance attribute: the class method is back
        return self.base_layer

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.method_name == "forward":
            return self._hooked(*args, **kwargs)
        return self.base_layer(*args, **kwargs)  # the hooked method is reached from inside

    def _hooked(self, *args: Any, **kwargs: Any) -> Any:
        method = self.base_layer if self.method_name == "forward" else self._original_method
        out = method(*args, **kwargs)
        for name in self.active_adapters:
            out = apply_to_hidden(out, self.hidden_pos[name], self.adapter(name))
        return out


class _MethodHook:
    """Stands in for the hooked method on the base instance. It keeps the original's signature, because
    some callers inspect it (transformers' `apply_chunking_to_forward` counts the arguments)."""

    def __init__(self, layer: AdapterLayer) -> None:
        self.layer = layer
        self.__signature__ = inspect.signature(layer._original_method)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.layer._hooked(*args, **kwargs)


def _check_method(module: nn.Module, method_name: str, where: str) -> None:
    """`method_name` must name a method of `module`: not a missing attribute, and not a submodule."""
    if isinstance(getattr(module, method_name, None), nn.Module):
        raise ValueError(f"AdapterConfig.method_name={method_name!r}: in {where} that is a submodule, not a "
                         f"method; to adapt its output, add it to target_modules (e.g. '{method_name}') and keep "
                         f"method_name='forward'")
    if not callable(getattr(module, method_name, None)):
        raise ValueError(f"AdapterConfig.method_name: {where} has no method {method_name!r}; use 'forward' or "
                         f"one of its methods")


@register_tuner
class AdapterTuner(Tuner):
    """Wraps each matched module; the adapter runs on its output (or on the output of `method_name`)."""

    config_class = AdapterConfig
    layer_class = AdapterLayer
    not_mergeable_reason = "an adapter is a non-linear bottleneck MLP added after the module; it has no weight to fold into"

    @classmethod
    def check(cls, model: nn.Module, config: AdapterConfig, names: list[str]) -> None:
        for name in names:
            module = model.get_submodule(name)
            base = innermost_base_layer(module)
            if config.method_name != "forward":
                _check_method(base, config.method_name, f"{name!r} ({type(base).__name__})")
            found = feature_width(module, "out") if config.hidden_pos in (None, 0) else None
            if found is not None and found[0] != config.dim:
                width, leaf = found
                raise ValueError(f"AdapterConfig.dim={config.dim}: the output of {name!r} ({type(base).__name__}) has "
                                 f"{width} features{said_by(found)}, and the adapter's W_1 reads "
                                 f"dim features; set dim={width}")
        if config.hidden_pos is not None and config.method_name == "forward":
            outputs = probe_outputs(model, names) or {}  # which item is the hidden states: only a run can say
            for name, output in outputs.items():
                check_output_position("AdapterConfig", "hidden_pos", config.hidden_pos, name,
                                      model.get_submodule(name), output)
