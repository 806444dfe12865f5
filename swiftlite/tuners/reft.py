"""ReFT: Representation Finetuning for Language Models (Wu et al., 2024, arXiv:2404.03592).

Instead of weights, ReFT edits hidden representations. LoReFT edits the hidden state h ∈ R^d output
by a chosen layer inside an r-dimensional subspace::

    Φ(h) = h + Rᵀ(W h + b − R h)       R ∈ R^{r×d}, orthonormal rows (R Rᵀ = I); W ∈ R^{r×d}, b ∈ R^r

i.e. the component of h in the row space of R, R h, is replaced by W h + b; the rest of h is kept. R
stays orthonormal through training by a parametrization: the stored matrix X (r×d) is free, and
R = the orthonormal rows of X's QR decomposition (signs fixed so an orthonormal X is its own R), so any
optimizer step, weight decay or perturbation of X still gives R Rᵀ = I. (torch's
`parametrizations.orthogonal(use_trivialization=False)` is not safe here: it takes the signs of R's
columns from X's diagonal cast to int, so weight decay shrinking a diagonal entry below 1 zeroes R.)

`intervention_type` (pyreft's names, as ms-swift passes them on):
- 'LoreftIntervention': the equation above.
- 'NoreftIntervention': the same with a plain linear P ∈ R^{r×d} (no orthogonality):
  Φ(h) = h + Pᵀ(W h + b − P h).
- 'DireftIntervention': Φ(h) = h + Rᵀ(W h + b), R orthonormal (the "direct" edit: no − R h).

Where: the outputs of the decoder layers `layers` (indices; None: all) of the layer stack `layer_key`
(a dotted path to an nn.ModuleList; None: the model's first nn.ModuleList, e.g. `model.layers`).
Adapter `<name>` of layer i is its child `reft_<name>` (`model.layers.3.reft_default.rotate_layer...`).

Not the identity at initialisation (as in pyreft): R is a random orthonormal matrix and W, b are
nn.Linear's default init, so R h is replaced by W h + b ≠ R h; only W = R, b = 0 gives Φ(h) = h.

Differences from the paper / ms-swift:
- Positions: the edit is applied to the hidden states at every position of every forward pass (prompt
  and generated tokens). The paper and pyreft intervene on chosen positions only (e.g. the first and
  last p prompt tokens, passed as `intervention_locations`), and not on generated tokens; ms-swift
  hands pyreft the batch's `intervention_locations` when the dataset provides them.
- Native code, no pyreft/pyvene; the checkpoint is swiftlite's layout (not pyreft's
  `save_intervention` files), so checkpoints do not convert between the two.
- `args` (ms-swift: a JSON string of extra intervention arguments) takes only {"dropout": p}, applied
  to the edit Rᵀ(...) rather than (as in pyreft) to the whole output; `model_type` is recorded but
  not used: the layer stack is `layer_key` or the first nn.ModuleList. ConsreFT, LobiReFT and
  NodiReFT are not implemented. Deactivating an adapter works (ms-swift's ReFT cannot be deactivated).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Literal, Union

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Index, PositiveInt
from ..core.modules import apply_to_hidden
from ..core.targeting import module_list_at, replace_module
from ..core.tuner import feature_width

INTERVENTIONS = ("LoreftIntervention", "NoreftIntervention", "DireftIntervention")
ReftArgs = Annotated[Union[str, dict, None], "None, a JSON string or a dict such as {\"dropout\": 0.05}"]


@dataclass
class ReftConfig(SwiftConfig):
    """Field names and defaults follow ms-swift's `ReftConfig`."""

    swift_type: str = field(default="reft")  # ms-swift's spelling (SwiftTuners.REFT)
    model_type: str | None = None  # ms-swift: finds the layer stack by model type; recorded only here
    layer_key: str | None = None  # dotted path of the nn.ModuleList of layers; None: the first ModuleList
    layers: list[Index] | None = None  # indices of the intervened layers; None: all of them
    r: PositiveInt = 4  # rank of the edited subspace
    intervention_type: Literal[INTERVENTIONS] = "LoreftIntervention"
    args: ReftArgs = None  # extra arguments: {"dropout": p}, as a dict or a JSON string (ms-swift's form)

    _invalid_examples: ClassVar[dict] = {"r": 0, "intervention_type": "ConsreftIntervention", "args": "{not json",
                                         "layer_key": "no.such.layers", "layers": [99]}

    def validate(self) -> None:
        self._require(isinstance(self.r, int) and self.r > 0, "r", f"must be a positive int, got {self.r!r}")
        self._require(self.intervention_type in INTERVENTIONS, "intervention_type",
                      f"one of {list(INTERVENTIONS)} (pyreft's names), got {self.intervention_type!r}")
        args = self.parsed_args()
        unknown = sorted(set(args) - {"dropout"})
        self._require(not unknown, "args", f"only 'dropout' is supported, got {unknown}")
        dropout = args.get("dropout", 0.0)
        self._require(isinstance(dropout, (int, float)) and not isinstance(dropout, bool) and 0 <= dropout < 1, "args",
                      f"'dropout' must be a number in [0, 1), got {dropout!r}")

    def parsed_args(self) -> dict[str, Any]:
        if self.args is None or isinstance(self.args, dict):
            return dict(self.args or {})
        try:
            parsed = json.loads(self.args)
        except json.JSONDecodeError as err:
            self._require(False, "args", f"{self.args!r} is not JSON ({err}); e.g. '{{\"dropout\": 0.05}}'")
        self._require(isinstance(parsed, dict), "args",
                      f"must be a JSON object such as '{{\"dropout\": 0.05}}', got {self.args!r}")
        return parsed


class OrthonormalRows(nn.Module):
    """Parametrization R = orthonormal rows spanning X's rows (X: (r, d), r <= d), via QR of Xᵀ."""

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        Q, upper = torch.linalg.qr(X.mT)  # Xᵀ = Q U, Q: (d, r) with orthonormal columns
        signs = torch.where(torch.diagonal(upper, dim1=-2, dim2=-1) < 0, -1.0, 1.0).to(Q.dtype)
        return (Q * signs.unsqueeze(-2)).mT  # flip columns so U's diagonal is positive: unique, and X = R if X is orthonormal

    def right_inverse(self, R: torch.Tensor) -> torch.Tensor:
        return R


class ReftIntervention(nn.Module):
    """One adapter's edit Φ of a d-dim hidden state (names as pyreft's: `rotate_layer`, `learned_source`)."""

    def __init__(self, d: int, r: int, intervention_type: str, dropout: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        self.intervention_type = intervention_type
        self.rotate_layer = nn.Linear(d, r, bias=False, device=device, dtype=dtype)  # R: (r, d)
        self.learned_source = nn.Linear(d, r, device=device, dtype=dtype)  # W h + b
        self.dropout = nn.Dropout(dropout)
        if intervention_type != "NoreftIntervention":
            nn.init.orthogonal_(self.rotate_layer.weight)
            parametrize.register_parametrization(self.rotate_layer, "weight", OrthonormalRows())  # R Rᵀ = I, kept so by training

    @property
    def R(self) -> torch.Tensor:
        return self.rotate_layer.weight  # (r, d)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h.to(self.R.dtype)
        if self.intervention_type == "DireftIntervention":
            # Φ(h) = h + Rᵀ(W h + b)
            edit = self.learned_source(x) @ self.R
        else:
            # Φ(h) = h + Rᵀ(W h + b − R h)        (NoReFT: R is a plain linear P)
            edit = (self.learned_source(x) - self.rotate_layer(x)) @ self.R
        return (x + self.dropout(edit)).to(h.dtype)


class ReftLayer(TunerLayer):
    """Wraps one layer of the stack; edits its output hidden states with every active adapter, in order."""

    adapter_prefixes = ("reft_",)

    def add_adapter(self, adapter_name: str, config: ReftConfig) -> None:
        device, dtype = self._base_device_dtype()
        module = ReftIntervention(hidden_size(self.base_layer), config.r, config.intervention_type,
                                  config.parsed_args().get("dropout", 0.0), device, dtype)
        module.train(self.base_layer.training)  # dropout follows the wrapped layer's mode, not nn.Module's default
        self.add_adapter_module("reft_", adapter_name, module)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.base_layer(*args, **kwargs)
        for name in self.active_adapters:
            out = apply_to_hidden(out, None, self._modules["reft_" + name])
        return out


def hidden_size(layer: nn.Module) -> int:
    found = feature_width(layer, "out")
    config = getattr(layer, "config", None)
    if found is None and getattr(config, "hidden_size", None) is None:
        raise ValueError(f"ReftConfig: cannot tell the hidden size of {type(layer).__name__}'s output")
    return found[0] if found is not None else config.hidden_size


def layer_stack(model: nn.Module, config: ReftConfig) -> tuple[str, nn.ModuleList]:
    """(path, nn.ModuleList) of the layers ReFT intervenes on."""
    if config.layer_key is None:
        for path, module in model.named_modules():
            if isinstance(module, nn.ModuleList) and len(module) and path:
                return path, module
        raise ValueError("ReftConfig.layer_key: the model has no nn.ModuleList of layers; give the dotted path of "
                         "its layer stack, e.g. 'model.layers'")
    return config.layer_key, module_list_at(model, config.layer_key, "ReftConfig.layer_key")


@register_tuner
class ReftTuner(Tuner):
    config_class = ReftConfig
    layer_class = ReftLayer
    identity_at_init = False  # R h is replaced by W h + b from the start (see the module docstring)
    mergeable = False
    not_mergeable_reason = "the edit acts on a layer's output hidden states, which no single weight produces"

    @classmethod
    def match(cls, model: nn.Module, config: ReftConfig) -> list[str]:
        path, stack = layer_stack(model, config)
        n = len(stack)
        wrong = [i for i in config.layers or [] if not -n <= i < n]
        if wrong:
            raise ValueError(f"ReftConfig.layers={config.layers}: {path!r} has {n} layers (indices 0..{n - 1}), "
                             f"got {wrong}")
        indices = sorted({i % n for i in config.layers}) if config.layers else range(n)
        return [f"{path}.{i}" for i in indices]

    @classmethod
    def check(cls, model: nn.Module, config: ReftConfig, names: list[str]) -> None:
        for name in names:
            d = hidden_size(model.get_submodule(name))
            if config.r > d and config.intervention_type != "NoreftIntervention":
                raise ValueError(f"ReftConfig.r={config.r}: R needs r orthonormal rows in R^{d} ({name!r} outputs "
                                 f"{d} features), so r <= {d}")

    @classmethod
    def inject(cls, model: nn.Module, config: ReftConfig, adapter_name: str) -> None:
        for name in cls.match(model, config):
            module = model.get_submodule(name)
            if not isinstance(module, ReftLayer):
                module = ReftLayer(module)
                replace_module(model, name, module)
            module.add_adapter(adapter_name, config)
