"""A new LoRA adapter from a weighted mix of others, as PEFT's `add_weighted_adapter`.

For adapters i with weights w_i and scalings s_i on one layer:

- "linear" (equal ranks):  A' = Σ sign(w_i s_i)·sqrt(|w_i s_i|)·A_i,  B' = Σ sqrt(|w_i s_i|)·B_i,  s' = 1
  (cheap and only approximate: B'A' has cross terms B_i A_j for i ≠ j);
- "svd":  ΔW = Σ w_i s_i B_i A_i, truncated to rank r' (`svd_rank`, default the largest rank):
  ΔW ≈ U_r' diag(S_r') V_r'^T,  B' = U_r' diag(S_r'),  A' = V_r'^T,  s' = 1.

Differences from PEFT: only these two combinations (PEFT also has "cat", TIES, DARE, magnitude
pruning); DoRA and merged-linear adapters cannot be combined.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from ...core.layer import tuner_layers
from .lora import LoRALayer


def add_weighted_adapter(swift_model: Any, adapters: list[str], weights: list[float], adapter_name: str,
                         combination_type: str = "svd", svd_rank: int | None = None) -> None:
    """Add `adapter_name` to `swift_model` (a SwiftModel) mixing `adapters` (see the module docstring)."""
    configs = [swift_model.adapters[name] for name in adapters]
    if combination_type not in ("svd", "linear"):
        raise ValueError(f"combination_type={combination_type!r}: expected 'svd' or 'linear'")
    if svd_rank is not None and (isinstance(svd_rank, bool) or not isinstance(svd_rank, int) or svd_rank < 1):
        raise ValueError(f"svd_rank={svd_rank!r}: expected a positive int (the rank of the combined adapter), or None "
                         f"for the largest rank among {adapters}")
    for name, w in zip(adapters, weights):
        if not math.isfinite(w):
            raise ValueError(f"weights: the weight of adapter {name!r} is {w}; give finite weights")
    _check_finite_factors(swift_model, adapters)
    if any(c.use_merged_linear for c in configs):
        raise ValueError("add_weighted_adapter: use_merged_linear adapters cannot be combined")
    if any(c.use_dora for c in configs):
        raise ValueError("add_weighted_adapter: DoRA adapters cannot be combined (their magnitudes do not add)")
    ranks = [max([c.r, *c.rank_pattern.values()]) for c in configs]
    if len(adapters) == 1 and not configs[0].rank_pattern:
        combination_type = "linear"  # as PEFT: one adapter is just rescaled
    if combination_type == "linear" and any(c.rank_pattern for c in configs):
        raise ValueError("combination_type='linear' needs equal ranks, and these adapters set rank_pattern; use 'svd'")
    if combination_type == "linear" and len(set(ranks)) != 1:
        raise ValueError(f"combination_type='linear' needs equal ranks, got r={ranks}; use 'svd'")
    new_rank = ranks[0] if combination_type == "linear" else (svd_rank or max(ranks))
    targets = [c.target_modules for c in configs]
    if all(isinstance(t, str) for t in targets):
        new_targets: Any = "|".join(f"({t})" for t in targets)
    elif not any(isinstance(t, str) for t in targets):
        new_targets = sorted({t for ts in targets for t in ts})
    else:
        raise ValueError("add_weighted_adapter: target_modules mix regex strings and lists; use one kind")
    config = dataclasses.replace(configs[0], r=new_rank, lora_alpha=new_rank, target_modules=new_targets,
                                 use_rslora=False, modules_to_save=None, init_lora_weights=True,
                                 rank_pattern={}, alpha_pattern={})
    swift_model.add_adapter(adapter_name, config)
    with torch.no_grad():
        for _, layer in tuner_layers(swift_model.base_model):
            if isinstance(layer, LoRALayer) and adapter_name in layer.scaling:
                parts = [(n, w * layer.scaling[n]) for n, w in zip(adapters, weights) if n in layer.scaling]
                _mix(layer, adapter_name, parts, combination_type, new_rank)


def _check_finite_factors(swift_model: Any, adapters: list[str]) -> None:
    """Every A_i, B_i is finite: a NaN/inf would spread through the sum (and make the SVD fail to converge)."""
    for layer_name, layer in tuner_layers(swift_model.base_model):
        if isinstance(layer, LoRALayer):
            for name in adapters:
                if name in layer.scaling and not all(torch.isfinite(f).all() for f in layer.factors(name)):
                    raise ValueError(f"adapters: adapter {name!r} has NaN/inf weights in {layer_name!r} (lora_A or "
                                     f"lora_B), so no combination of it is defined; fix or retrain {name!r}, or "
                                     f"leave it out")


def _mix(layer: LoRALayer, adapter_name: str, parts: list[tuple[str, float]], combination_type: str, rank: int) -> None:
    """Write the mixed A', B' of one layer; `parts` holds (adapter, w_i·s_i)."""
    A_new, B_new = layer.factors(adapter_name)  # views of the new adapter's parameters
    A_new.zero_(), B_new.zero_()
    if combination_type == "linear":
        for n, ws in parts:
            A, B = layer.factors(n)
            A_new += math.copysign(math.sqrt(abs(ws)), ws) * A  # sign(w s)·sqrt(|w s|)·A_i
            B_new += math.sqrt(abs(ws)) * B  # sqrt(|w s|)·B_i
        return
    delta = sum(ws * (layer.factors(n)[1] @ layer.factors(n)[0]) for n, ws in parts)  # Σ w_i s_i B_i A_i: (d_out, d_in·k)
    U, S, Vh = torch.linalg.svd(delta.float(), full_matrices=False)
    k = min(rank, S.numel())
    B_new[:, :k] = U[:, :k] * S[:k]  # U_r' diag(S_r')
    A_new[:k] = Vh[:k]  # V_r'^T
