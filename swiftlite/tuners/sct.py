"""SCT: Salient Channel Tuning — Revisiting Parameter-Efficient Fine-Tuning with Salient Channels
(Zhao et al., 2023, arXiv:2309.08513).

Only K of the C feature channels of a layer's output are tuned, the K "salient" ones, by a K×K linear
map added on those channels::

    h' = h + s · Pᵀ (W P h + b)        P ∈ {0,1}^{K×C} picks the K salient channels, W ∈ R^{K×K}, W = b = 0 at init

The channels are chosen *before* training from data, by a frozen forward pass over the training set
(`select_salient_channels`): at each tuned layer, the L2 norm of every channel over all tokens of all
images of one class, averaged over the classes; the K largest are the salient ones. The choice is part
of the config (`salient_channels`, {layer name: [channel, ...]}), so it is saved with the adapter and
can be inspected (and plotted) like any other setting.

Differences from the paper / its code: the paper's main variant ("sct_attn") inserts the K×K map inside
each block, after the attention residual (measured at `norm2`'s input); the reference code's "sct_mlp"
variant puts it at each block's output, which is the variant here: a target's output (`hidden_pos`
picks the tensor from a tuple output), so it works on any model whose layers return token features.
The reference's K is 96 of 768 (`top_k`, default 96 here as well). The channel statistics skip the
first `skip_tokens` tokens (the reference drops the CLS token). Not mergeable: h' feeds the residual
stream, which no weight computes alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import Index, PositiveInt, Target
from ..core.modules import apply_to_hidden, hidden_of
from ..core.targeting import match_modules, replace_module
from ..core.tuner import feature_width, said_by

Channels = dict[str, list[int]]


@dataclass
class SCTConfig(SwiftConfig):
    """swiftlite's own config (neither ms-swift nor PEFT has SCT)."""

    swift_type: str = field(default="SCT")
    target_modules: Target = None  # layers whose output is tuned, e.g. r"vit\\.layers\\.\\d+" (one per block)
    salient_channels: dict[str, list[int]] | list[int] | None = None  # {layer: K channels} from select_salient_channels, or one list for all
    top_k: PositiveInt = 96  # K: the number of salient channels per layer (the reference: 96 of 768)
    scale: float = 1.0  # s
    hidden_pos: Index | str | None = None  # which item of a tuple / dict output holds the features (None: the first)
    modules_to_save: Target = None  # extra modules trained in full (e.g. a new head)

    _invalid_examples: ClassVar[dict] = {"target_modules": None, "salient_channels": None, "top_k": 0}

    def validate(self) -> None:
        self._require(self.target_modules is not None, "target_modules",
                      "is required: the layers to tune, e.g. r'vit\\.layers\\.\\d+'")
        self._require(self.salient_channels is not None, "salient_channels",
                      "is required: choose them from data with swiftlite.tuners.sct.select_salient_channels(model, "
                      "loader, target_modules, top_k) (or give a list of channel indices)")
        lists = self.salient_channels.values() if isinstance(self.salient_channels, dict) else [self.salient_channels]
        for channels in lists:
            self._require(len(channels) == self.top_k and len(set(channels)) == len(channels)
                          and all(c >= 0 for c in channels), "salient_channels",
                          f"each entry must hold top_k={self.top_k} distinct non-negative channel indices, "
                          f"got {len(channels)} ({channels[:5]}...)")


class SCTLayer(TunerLayer):
    """Wraps a layer; adds s · Pᵀ(W P h + b) on its output's salient channels, for each active adapter."""

    adapter_attrs = ("sct",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.sct = nn.ModuleDict()  # adapter -> nn.Linear(K, K): W, b
        self.channels: dict[str, torch.Tensor] = {}
        self.scale: dict[str, float] = {}
        self.hidden_pos: dict[str, Any] = {}

    def add_adapter(self, adapter_name: str, config: SCTConfig, channels: list[int]) -> None:
        device, dtype = self._base_device_dtype()
        linear = nn.Linear(config.top_k, config.top_k, device=device, dtype=dtype)
        nn.init.zeros_(linear.weight)  # W = 0, b = 0: h' = h at init
        nn.init.zeros_(linear.bias)
        self.sct[adapter_name] = linear
        self.channels[adapter_name] = torch.tensor(channels, dtype=torch.long)
        self.scale[adapter_name] = config.scale
        self.hidden_pos[adapter_name] = config.hidden_pos

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        for table in (self.channels, self.scale, self.hidden_pos):
            table.pop(adapter_name, None)

    def _tune(self, adapter_name: str, h: torch.Tensor) -> torch.Tensor:
        linear, idx = self.sct[adapter_name], self.channels[adapter_name].to(h.device)
        if idx.max() >= h.shape[-1]:
            raise ValueError(f"SCTConfig.salient_channels: channel {int(idx.max())} does not exist; this layer's "
                             f"output has {h.shape[-1]} channels")
        delta = linear(h.index_select(-1, idx).to(linear.weight.dtype))  # W P h + b : (..., K)
        # h' = h + s · Pᵀ (W P h + b)
        return h.index_add(-1, idx, (self.scale[adapter_name] * delta).to(h.dtype))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.base_layer(*args, **kwargs)
        for name in self.active_adapters:
            out = apply_to_hidden(out, self.hidden_pos[name], lambda h, n=name: self._tune(n, h))
        return out


@register_tuner
class SCTTuner(Tuner):
    """Wraps each matched layer in an SCTLayer with its own salient channels."""

    config_class = SCTConfig
    layer_class = SCTLayer
    not_mergeable_reason = "the K×K map acts on a layer's output, which feeds a residual stream no weight computes alone"

    @classmethod
    def check(cls, model: nn.Module, config: SCTConfig, names: list[str]) -> None:
        channels = config.salient_channels
        if isinstance(channels, dict):
            missing = [n for n in names if n not in channels]
            if missing:
                raise ValueError(f"SCTConfig.salient_channels: no channels for {missing[:3]} (it has "
                                 f"{sorted(channels)[:3]}...); compute them for the same "
                                 f"target_modules with select_salient_channels")
        for name in names:
            found = feature_width(model.get_submodule(name), "out") if config.hidden_pos in (None, 0) else None
            highest = max(channels[name] if isinstance(channels, dict) else channels)
            if found is not None and highest >= found[0]:
                raise ValueError(f"SCTConfig.salient_channels: channel {highest} does not exist in the output of "
                                 f"{name!r}, which has {found[0]} channels{said_by(found)}; pick channels below {found[0]}")

    @classmethod
    def inject(cls, model: nn.Module, config: SCTConfig, adapter_name: str) -> None:
        for name in cls.match(model, config):
            channels = config.salient_channels
            channels = channels[name] if isinstance(channels, dict) else channels
            module = model.get_submodule(name)
            layer = module if isinstance(module, SCTLayer) else SCTLayer(module)
            layer.add_adapter(adapter_name, config, channels)
            if layer is not module:
                replace_module(model, name, layer)


@torch.no_grad()
def select_salient_channels(model: nn.Module, loader: Iterable[dict[str, Any]], target_modules: Target, top_k: int = 96,
                            *, label_key: str = "labels", hidden_pos: Any = None, skip_tokens: int = 1,
                            return_scores: bool = False) -> Channels | tuple[Channels, dict[str, torch.Tensor]]:
    """{layer name: its top_k salient channels (sorted)} from one frozen pass over `loader`.

    `loader` yields dicts of model inputs plus `label_key` (class ids), e.g. a DataLoader over a
    `datasets.Dataset`. For each layer, score_c = mean over classes k of ‖h_c‖₂ over every token of
    every example of class k (tokens after the first `skip_tokens`; a 2-D output counts as one
    token). With `return_scores` also returns {layer: (C,) scores}, to inspect or plot the choice."""
    names = match_modules(model, target_modules, config_name="select_salient_channels")
    sums: dict[str, dict[int, torch.Tensor]] = {n: {} for n in names}  # layer -> class -> Σ h_c² over its tokens
    labels: torch.Tensor | None = None

    def record(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            h = hidden_of(output, hidden_pos).float()
            h = h[:, skip_tokens:] if h.dim() == 3 else h.unsqueeze(1)  # (B, T, C)
            for k in labels.unique().tolist():
                squares = h[labels == k].pow(2).sum(dim=(0, 1))  # (C,)
                sums[name][k] = sums[name].get(k, 0) + squares
        return hook

    handles = [model.get_submodule(n).register_forward_hook(record(n)) for n in names]
    training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        for batch in loader:
            labels = torch.as_tensor(batch[label_key]).to(device)
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items() if k != label_key}
            model(**inputs)
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    if not any(sums.values()):
        raise ValueError("select_salient_channels: the loader yielded no batch")
    # score_c = mean_k ‖h_c‖₂ over class k
    scores = {n: torch.stack([s.sqrt() for s in per_class.values()]).mean(0) for n, per_class in sums.items()}
    for n, score in scores.items():
        if top_k > score.numel():
            raise ValueError(f"select_salient_channels: top_k={top_k} is more than the {score.numel()} channels of {n!r}")
    channels = {n: sorted(score.topk(top_k).indices.tolist()) for n, score in scores.items()}
    return (channels, scores) if return_scores else channels
