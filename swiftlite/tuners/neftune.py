"""NEFTune: Noisy Embeddings Improve Instruction Finetuning (Jain et al., 2023, arXiv:2310.05914).

During training, uniform noise is added to the input embeddings of every sequence::

    X_emb ← X_emb + (α / √(L·d)) · ε,        ε ~ U(−1, 1)^{L×d}

where L is the sequence length and d the embedding size. In evaluation mode the embedding is left
untouched, so the model *is* the base model at inference: NEFTune has no parameters, nothing to
save (the checkpoint holds only the config) and nothing to merge.

NEFTune regularises the training of *other* weights: combine it with a tuner that trains something,
e.g. `Swift.prepare_model(model, {"lora": LoRAConfig(...), "neftune": NEFTuneConfig()})`.

Which module: `target_modules=None` uses the model's `get_input_embeddings()` when it has one
(transformers models), otherwise every `nn.Embedding` (ms-swift's rule).

Differences from the paper: none in the noise; as in ms-swift and transformers, L is the padded
length of the batch. Several active NEFTune adapters on one embedding each add their own noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ..core import SwiftConfig, Tuner, TunerLayer, register_tuner
from ..core.config import NonNegativeFloat, Target
from ..core.modules import Settings
from ..core.targeting import match_modules


@dataclass
class NEFTuneConfig(SwiftConfig):
    """`noise_alpha` follows ms-swift's `NEFTuneConfig`; `target_modules` is a swiftlite addition."""

    swift_type: str = field(default="neftune")  # ms-swift's spelling (SwiftTuners.NEFTUNE); read in any case
    noise_alpha: NonNegativeFloat = 5.0  # α; the paper sweeps 5, 10, 15 (ms-swift's default is 5)
    target_modules: Target = None  # None: get_input_embeddings(), else every nn.Embedding

    _invalid_examples: ClassVar[dict] = {"noise_alpha": -1.0}

    def validate(self) -> None:
        self._require(isinstance(self.noise_alpha, (int, float)) and self.noise_alpha >= 0 and math.isfinite(self.noise_alpha),
                      "noise_alpha", f"must be a finite number >= 0 (the paper uses 5 to 15), got {self.noise_alpha!r}")


class NEFTuneLayer(TunerLayer):
    """Adds α/√(L·d)·U(−1,1) noise to an embedding's output in training mode."""

    adapter_attrs = ("neftune",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__(base_layer)
        self.neftune = nn.ModuleDict()


    def add_adapter(self, adapter_name: str, config: NEFTuneConfig) -> None:
        self.neftune[adapter_name] = Settings(noise_alpha=config.noise_alpha)  # NEFTune trains nothing

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        x_emb = self.base_layer(*args, **kwargs)  # (B, L, d)
        if not self.training:
            return x_emb
        L, d = x_emb.shape[-2], x_emb.shape[-1]
        for name in self.active_adapters:
            magnitude = self.neftune[name].noise_alpha / math.sqrt(L * d)
            # X_emb ← X_emb + (α / √(L·d)) · ε,  ε ~ U(−1, 1)
            x_emb = x_emb + torch.empty_like(x_emb).uniform_(-1.0, 1.0) * magnitude
        return x_emb


@register_tuner
class NEFTuneTuner(Tuner):
    config_class = NEFTuneConfig
    layer_class = NEFTuneLayer
    identity_at_init = True  # in eval mode, which is how the model is compared (train mode adds noise)
    mergeable = False
    not_mergeable_reason = "NEFTune is training-time noise with no weights; at inference it is already the base model."

    @classmethod
    def match(cls, model: nn.Module, config: NEFTuneConfig) -> list[str]:
        name = type(config).__name__
        if config.target_modules is not None:
            return match_modules(model, config.target_modules, config_name=name)
        get_emb = getattr(model, "get_input_embeddings", None)
        embedding = None
        if callable(get_emb):
            try:
                embedding = get_emb()
            except (NotImplementedError, AttributeError):
                embedding = None
        if embedding is not None:
            for module_name, module in model.named_modules():
                if module is embedding:
                    return [module_name]
        try:  # ms-swift's rule: every nn.Embedding
            return match_modules(model, r".+", types=(nn.Embedding,), config_name=name, skip_unsupported=True)
        except ValueError:
            raise ValueError(f"{name}.target_modules=None: the model has no get_input_embeddings() and no nn.Embedding; "
                             f"name the module that embeds the inputs, e.g. target_modules=['embed']") from None
