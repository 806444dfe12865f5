"""LISA: layerwise importance sampling, a few decoder layers trainable at a time.

Pan et al., "LISA: Layerwise Importance Sampling for Memory-Efficient Large Language Model
Fine-Tuning" (arXiv:2403.17919). Full fine-tuning updates every layer at every step. LISA keeps
the embeddings and the head (the layers whose update norms the paper found largest) always
trainable and, for each period of K steps, draws γ of the L decoder layers uniformly without
replacement; only those train in that period::

    for period p = 0, 1, 2, ...:   S_p ~ Uniform({γ-subsets of {0..L-1}})
        for t in [pK, (p+1)K):     θ_l ← AdamW(θ_l, ∇_{θ_l} L)   for l ∈ S_p ∪ {embeddings, norms, head}
                                   θ_l unchanged                  for every other layer

so gradients and optimizer state exist for γ layers instead of L (SWIFT's benchmark on
Qwen-7B-chat: LISA with 2 layers 31.1 GiB at 2.66 samples/s vs full fine-tuning 73.5 GiB at 1.43).
ms-swift exposes it as ``lisa_activated_layers`` (γ) and ``lisa_step_interval`` (K), implemented as
a trainer callback; here :class:`LISA` is the ``on_step_begin`` callback of
:func:`swiftlite.train.train`.

Optimizer state across switches. The optimizer holds every parameter that can ever train (all
layers, embeddings, norms, head), built once by :meth:`LISA.make_optimizer`. A layer that leaves
the active set gets ``requires_grad=False`` and ``grad=None``, and its optimizer state (AdamW's
two moments and step count) is deleted. torch's optimizers skip a parameter whose ``grad`` is
None entirely, so a frozen layer receives no weight decay and no momentum step while frozen (a
loop that zeroed grads instead of dropping them would keep moving it by its old momentum and
decay). Deleting the state frees its memory, as LISA's memory argument assumes, and a layer drawn
again starts with fresh moments (the paper does not say what happens to them).

Why the conformance kit's adapter checks do not apply: LISA is a *training technique*, not a
tuner. It adds no modules and no adapter weights; it tunes the base model's own weights in place,
so there is nothing to activate/deactivate, merge, save as an adapter or reload onto a fresh base
(a checkpoint is the whole fine-tuned model). What can be checked (tests/test_lisa.py) is the
schedule, that frozen layers stay bit-identical while frozen, and the optimizer state.

Differences from ms-swift: ms-swift's callback takes the first ``nn.ModuleList`` of the model as the
layers and freezes them all when it is created, before the 🤗 Trainer builds its optimizer; here
the decoder layers are looked up by their 🤗 paths and the optimizer is built explicitly over every
layer (:meth:`LISA.make_optimizer`). Layers are drawn with a seeded ``torch.Generator``
(reproducible runs). Freezing under DistributedDataParallel is not supported (DDP fixes the set of
parameters that receive gradients when it wraps the model).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LISAConfig", "LISA", "decoder_layers"]


@dataclass
class LISAConfig:
    """ms-swift's two LISA arguments, plus the seed of the layer draws."""

    lisa_activated_layers: int = 2  # γ: decoder layers trainable at a time (ms-swift: 2 or 8 recommended)
    lisa_step_interval: int = 20  # K: optimizer steps between two draws
    seed: int = 0  # seed of the layer draws

    def __post_init__(self):
        for name in ("lisa_activated_layers", "lisa_step_interval"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"LISAConfig.{name}: must be a positive int, got {value!r}.")


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The decoder blocks of a 🤗 causal LM (``model.model.layers`` for LLaMA/Qwen/Mistral)."""
    for path in ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers", "layers"):
        module = model
        for attr in path.split("."):
            module = getattr(module, attr, None)
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    raise ValueError(f"LISA: found no decoder layers in {type(model).__name__} (looked for model.layers, "
                     "model.model.layers, transformer.h, gpt_neox.layers, layers); pass a transformers causal LM.")


class LISA:
    """Layer switcher for :func:`swiftlite.train.train` (``on_step_begin=lisa``).

    ``LISA(model, config)`` makes every parameter outside the decoder layers trainable and draws
    the first γ layers (step 0). Train with the optimizer from :meth:`make_optimizer`, which
    holds every layer, so that later draws have somewhere to step::

        lisa = LISA(model, LISAConfig(lisa_activated_layers=2, lisa_step_interval=20))
        train(model, ds, sft_loss, steps=..., optimizer=lisa.make_optimizer(lr=1e-3), on_step_begin=lisa)

    ``history`` lists ``(step, active layer indices)`` for every draw.
    """

    def __init__(self, model: nn.Module, config: LISAConfig | None = None):
        self.config = config or LISAConfig()
        self.layers = decoder_layers(model)
        L, gamma = len(self.layers), self.config.lisa_activated_layers
        if gamma > L:
            raise ValueError(f"LISAConfig.lisa_activated_layers: {gamma} > the model's {L} decoder layers; "
                             f"choose 1..{L}.")
        self.model = model
        # each layer's own weights: a block listed inside an earlier one (LLaMA-Pro's new blocks, which
        # `model.layers` lists after the block that holds them) owns its weights, not its holder
        owner = {id(p): index for index, layer in enumerate(self.layers) for p in layer.parameters()}
        self.layer_params = [[p for p in layer.parameters() if owner[id(p)] == index]
                             for index, layer in enumerate(self.layers)]
        layer_params = set(owner)
        self.always = [p for p in model.parameters() if id(p) not in layer_params]  # embeddings, norms, head
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.active: list[int] = []
        self.history: list[tuple[int, list[int]]] = []
        for p in self.always:
            p.requires_grad_(True)
        self.switch(step=0, optimizer=None)

    def make_optimizer(self, lr: float, weight_decay: float = 0.0, optimizer_cls=torch.optim.AdamW,
                       **kwargs) -> torch.optim.Optimizer:
        """The optimizer over every parameter LISA may train (all layers + the always-trained ones)."""
        params = list(self.model.parameters())
        return optimizer_cls(params, lr=lr, weight_decay=weight_decay, **kwargs)

    def switch(self, step: int, optimizer: torch.optim.Optimizer | None) -> list[int]:
        """Draw a new active set S (γ layers, uniform without replacement) and freeze the rest."""
        L, gamma = len(self.layer_params), self.config.lisa_activated_layers
        self.active = sorted(torch.randperm(L, generator=self.generator)[:gamma].tolist())  # S_p
        inner = getattr(optimizer, "optimizer", optimizer)  # Accelerate wraps the optimizer
        for index, params in enumerate(self.layer_params):
            train_it = index in self.active
            for p in params:
                p.requires_grad_(train_it)
                if not train_it:
                    p.grad = None  # None, not 0: the optimizer then skips p (no decay, no momentum)
                    if inner is not None:
                        inner.state.pop(p, None)  # drop its moments: a redrawn layer starts fresh
        self.history.append((step, list(self.active)))
        return self.active

    def __call__(self, step: int, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """``on_step_begin`` hook: a new draw every ``lisa_step_interval`` steps (step 0 is drawn at init)."""
        if step > 0 and step % self.config.lisa_step_interval == 0:
            self.switch(step, optimizer)
