"""What Res-Tuning-Bypass saves, measured: training memory against non-detached Res-Tuning, and
multi-task inference with one backbone forward.

Res-Tuning-Bypass (Jiang et al., NeurIPS 2023, arXiv:2310.19859, `swiftlite/tuners/restuning.py`)
detaches the backbone features its probes read, so

* **training memory**: no backbone activation is saved for backward (nothing upstream of a probe
  needs a gradient). The paper compares it with Res-Tuning, whose Res-Tuners sit *inside* the
  backbone (``UTuningConfig``), so gradients flow back through every frozen block and autograd keeps
  their activations: −49.7 % training memory (ViT-B/16, VTAB). We also measure the Bypass network
  with probes *not* detached (``ResTuningConfig(use_bypass=False)``); without a trainable weight
  upstream of the probes (frozen backbone, pixels without gradient) the backbone's outputs carry no
  autograd graph either way, so that ablation alone changes nothing.
* **multi-task inference**: K tasks that share the frozen backbone need one backbone forward and
  K side networks, instead of K full forwards. The paper: −80.9 % time over 19 VTAB tasks.

Both are measured here on the same backbone and batch, in one process, and reported as ratios.

Backbones (``vit_backbone``): ``"vit-tiny"`` is the zoo's pretrained model (hidden 64, 4 layers, 32 px,
65 tokens); ``"vit-b16-shape"`` is a randomly initialised ``ViTForImageClassification`` with ViT-B/16's
shape (hidden 768, 12 layers, 12 heads, 224 px, 197 tokens): memory and time do not depend on the
weights' values, and this is the size the paper measured.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .. import bench
from ..api import Swift
from ..tuners import ResTuningConfig, UTuningConfig, restuning
from .harness import load_backbone, prepare

__all__ = ["vit_backbone", "bypass_config", "res_tuning_config", "bypass_memory_comparison", "multi_task_timing",
           "VIT_B16_SHAPE", "RES_TUNING", "BYPASS", "NOT_DETACHED"]

VIT_B16_SHAPE = dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072)  # ViT-B/16 (Dosovitskiy et al.), the paper's backbone


def vit_backbone(name: str = "vit-tiny", num_labels: int = 10, seed: int = 0) -> nn.Module:
    """``"vit-tiny"`` (the zoo's, with a fresh ``num_labels`` head) or ``"vit-b16-shape"`` (random weights)."""
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    if name == "vit-b16-shape":
        config = ViTConfig(**VIT_B16_SHAPE, num_labels=num_labels, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0)
        return ViTForImageClassification(config)
    return load_backbone(name, [str(i) for i in range(num_labels)])


def bypass_config(model: nn.Module, use_bypass: bool = True, **options: Any):
    """The ViT Res-Tuning-Bypass used throughout (ms-swift's ViT recipe): x_0 = the embeddings' output,
    stems = every ``vit.layers.<i>`` output, x_N replaces the input of the final ``vit.layernorm``;
    Res-Adapters (m = 32 by default) as lateral and vertical tuners. ``options`` go to ``ResTuningConfig``."""
    return ResTuningConfig(dims=model.config.hidden_size, root_modules=r"vit\.embeddings", root_modules_hook="output",
                           stem_modules=r"vit\.layers\.\d+", target_modules="vit.layernorm", use_bypass=use_bypass,
                           **options)


def _pixel_batch(model: nn.Module, batch_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    size = model.config.image_size
    g = torch.Generator().manual_seed(seed)
    return {"pixel_values": torch.rand(batch_size, 3, size, size, generator=g) * 2 - 1,  # (B, 3, H, W) in [-1, 1]
            "labels": torch.randint(0, model.config.num_labels, (batch_size,), generator=g)}


RES_TUNING = "Res-Tuning (Res-Adapter beside MHA and FFN)"
BYPASS = "Res-Tuning-Bypass (detached probes)"
NOT_DETACHED = "Bypass network, probes not detached (use_bypass=False)"


def res_tuning_config(model: nn.Module, adapter_length: int = 32):
    """Res-Tuning proper on a ViT: a Res-Adapter (m = ``adapter_length``) beside every attention and MLP
    module (``UTuningConfig``). Two Res-Adapters per block, as the Bypass has (lateral + vertical), so
    both train the same number of weights."""
    return UTuningConfig(target_modules=r"vit\.layers\.\d+\.(attention|mlp)", tuner="res_adapter",
                         adapter_length=adapter_length)


def bypass_memory_comparison(backbone: str = "vit-tiny", batch_size: int = 64, device: str = "cpu",
                             steps: int = 5, warmup: int = 2, include_full: bool = True) -> list[dict[str, Any]]:
    """``swiftlite.bench.measure`` rows, on one backbone and one batch, for

    * ``RES_TUNING``: Res-Adapters inside the backbone (``res_tuning_config``), gradients through it;
    * ``BYPASS``: ``bypass_config(use_bypass=True)``, the same number of trainable weights;
    * ``NOT_DETACHED``: the Bypass network with ``use_bypass=False``;
    * (``include_full``) full fine-tuning.

    Every model also trains its new classifier head. Each row gets ``peak_memory_ratio_to_res_tuning``
    and ``step_time_ratio_to_res_tuning`` (row / the Res-Tuning row).
    """
    batch = _pixel_batch(vit_backbone(backbone), batch_size)
    variants: dict[str, Callable[[nn.Module], Any]] = {
        RES_TUNING: res_tuning_config,
        BYPASS: lambda m: bypass_config(m, use_bypass=True),
        NOT_DETACHED: lambda m: bypass_config(m, use_bypass=False),
    }
    if include_full:
        variants["full fine-tuning"] = lambda m: None
    rows = []
    for name, make in variants.items():
        model = vit_backbone(backbone)
        model = prepare(model, make(model)).to(device)
        rows.append(bench.measure(model, lambda: batch, name=name, steps=steps, warmup=warmup))
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    reference = rows[0]
    for row in rows:
        row["peak_memory_ratio_to_res_tuning"] = row["peak_memory_bytes"] / reference["peak_memory_bytes"]
        row["step_time_ratio_to_res_tuning"] = row["step_time_s"] / reference["step_time_s"]
        row["backbone"], row["batch_size"] = backbone, batch_size
    return rows


def multi_task_timing(backbone: str = "vit-tiny", k: int = 5, batch_size: int = 64, device: str = "cpu",
                      rounds: int = 10, warmup: int = 2) -> dict[str, Any]:
    """Inference time of K task adapters: one shared backbone forward + K bypasses, against K full
    forwards (one per task, each with only its adapter active). Needs ``restuning.multi_task_forward``
    (the multi-task helper of ``swiftlite/tuners/restuning.py``); also checks that both give the same logits.

    The K forwards and the shared forward alternate within each round; the ratio is the median over
    rounds of (shared time / K-forwards time). Returns a dict with both medians, the ratio, its IQR,
    and the largest logit difference.
    """
    helper = getattr(restuning, "multi_task_forward", None)
    if helper is None:
        raise RuntimeError("multi_task_timing needs swiftlite.tuners.restuning.multi_task_forward, which this "
                           "version of swiftlite does not have")
    model = vit_backbone(backbone)
    names = [f"task{i}" for i in range(k)]
    model = Swift.prepare_model(model, {n: bypass_config(model) for n in names})
    model.to(device).eval()
    for p in model.parameters():  # the adapters start near identity; random weights make the tasks differ
        if p.requires_grad:
            with torch.no_grad():
                p.add_(0.02 * torch.randn_like(p))
    pixel_values = _pixel_batch(model, batch_size)["pixel_values"].to(device)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def separate() -> list[torch.Tensor]:
        out = []
        for n in names:
            model.set_active_adapters(n)
            out.append(model(pixel_values=pixel_values).logits)
        model.set_active_adapters(names)
        return out

    def shared() -> list[torch.Tensor]:
        return helper(model, names, pixel_values=pixel_values)

    def timed(fn):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            result = fn()
        sync()
        return time.perf_counter() - t0, result

    separate_t, shared_t, ratios = [], [], []
    for i in range(warmup + rounds):
        order = [separate, shared] if i % 2 == 0 else [shared, separate]
        times = {}
        for fn in order:
            times[fn.__name__], result = timed(fn)
            if fn is shared:
                shared_out = result
            else:
                separate_out = result
        if i >= warmup:
            separate_t.append(times["separate"])
            shared_t.append(times["shared"])
            ratios.append(times["shared"] / times["separate"])
    out_shared = [shared_out[n].logits for n in names]
    max_diff = max(float((a - b).abs().max()) for a, b in zip(out_shared, separate_out))
    q25, q50, q75 = np.percentile(ratios, [25, 50, 75])
    return {"backbone": backbone, "k": k, "batch_size": batch_size, "device": device,
            "separate_forwards_s": float(np.median(separate_t)), "shared_forward_s": float(np.median(shared_t)),
            "time_ratio": float(q50), "time_ratio_iqr": (float(q25), float(q75)), "max_logit_difference": max_diff,
            "rounds": rounds}
