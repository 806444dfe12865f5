"""LoRA+: Efficient Low Rank Adaptation of Large Models (Hayou et al., 2024, arXiv:2402.12354).

In h = W0 x + s · B A x, A and B should not learn at the same rate: with width n → ∞ the stable
choice is η_B = λ · η_A with λ ≫ 1, so LoRA+ gives B's parameters a larger learning rate::

    η_A = lr,    η_B = lorap_lr_ratio · lr

Set `LoRAConfig.lorap_lr_ratio` (ms-swift's name; PEFT's `create_loraplus_optimizer` calls it
`loraplus_lr_ratio`) and build the optimizer from `SwiftModel.create_optimizer_param_groups(lr=...)`.

Groups (names as PEFT / ms-swift), chosen by the module that owns each parameter:
- "groupA": A, and the other matrices (e.g. a modules_to_save copy's weight): lr;
- "groupB": B, and 1-D parameters such as DoRA's m: lr · ratio;
- "groupB_no_decay": biases and norm parameters: lr · ratio, no weight decay;
- "embedding": an Embedding LoRA's A and B: `lorap_emb_lr`.

Differences from the paper: none in the rule; the groups follow PEFT's implementation.
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from ...core.layer import tuner_layers
from .lora import LoRAConfig, LoRALayer

NO_DECAY_TYPES = (nn.LayerNorm, nn.GroupNorm)  # as PEFT / transformers: norms and biases get no weight decay


def loraplus_param_groups(model: nn.Module, config: LoRAConfig, params: dict[str, nn.Parameter],
                          **defaults: Any) -> list[dict[str, Any]]:
    """Optimizer groups for one adapter's trainable `params` (name -> parameter) inside `model`."""
    lr, decay = defaults.get("lr", 1e-3), defaults.get("weight_decay", 0.0)
    group_of: dict[int, str] = {}  # id(parameter) -> group, from the type of the module that owns it
    for _, layer in tuner_layers(model):
        if isinstance(layer, LoRALayer):
            for p in layer.attr_A.parameters():
                group_of[id(p)] = "embedding" if layer.embedding else "groupA"
            for p in layer.attr_B.parameters():
                group_of[id(p)] = "embedding" if layer.embedding else "groupB"
    for module in model.modules():
        for leaf, p in module.named_parameters(recurse=False):
            if id(p) not in group_of and p.dim() == 1:
                no_decay = leaf == "bias" or isinstance(module, NO_DECAY_TYPES)
                group_of[id(p)] = "groupB_no_decay" if no_decay else "groupB"
    groups: dict[str, list[nn.Parameter]] = {"groupA": [], "embedding": [], "groupB": [], "groupB_no_decay": []}
    for p in params.values():
        groups[group_of.get(id(p), "groupA")].append(p)
    ratio = config.lorap_lr_ratio
    settings = {"groupA": (lr, decay), "embedding": (config.lorap_emb_lr, decay),
                "groupB": (lr * ratio, decay), "groupB_no_decay": (lr * ratio, 0.0)}
    return [{**defaults, "params": ps, "lr": settings[g][0], "weight_decay": settings[g][1], "name": g}
            for g, ps in groups.items() if ps]
