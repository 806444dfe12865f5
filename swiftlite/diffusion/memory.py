"""Where a U-Net's training memory goes: SC-Tuner against LoRA on the same U-Net (SCEdit's memory claim).

SCEdit (arXiv:2312.11392) tunes only the skip connections: every SC-Tuner sits in the decoder and
reads features of the frozen encoder, so backward stops at the skips and the encoder keeps no
activations for it. LoRA on the attention and conv layers has tuners in the encoder too, so backward
runs through the whole U-Net. :func:`compare_memory` measures both on copies of one U-Net, in one run:

* peak training memory per method with :func:`swiftlite.bench.measure` (on a CPU: parameters +
  tensors saved for backward + gradients + AdamW state, ``memory_parts_bytes``);
* the breakdown (:func:`saved_bytes_by_region`): every tensor autograd saves for backward,
  attributed to the U-Net part whose forward saved it (time embedding; encoder = ``conv_in`` + down
  blocks + mid block; decoder = up blocks + output convs), and whether any encoder output needs a
  gradient.

LoRA's rank is the one whose trainable count is closest to the SC-Tuner's (a comparable budget).
:func:`sd_layout_unet` builds a U-Net with SD v1.5's block layout at a small width, for the
comparison on the layout the paper measured. Used by ``benchmarks/scedit_memory.py`` and tutorial 06.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch

from .. import bench
from ..api import Swift
from ..tuners import LoRAConfig, SCETuningConfig
from ..tuners.scetuning import unet_skip_widths

__all__ = ["ATTENTION", "ATTENTION_AND_CONV", "regions", "saved_bytes_by_region", "lora_rank_for", "sd_layout_unet",
           "compare_memory", "memory_report", "memory_figure"]

ATTENTION = r".*attn\d\.(to_q|to_k|to_v|to_out\.0)"
ATTENTION_AND_CONV = r".*(attn\d\.(to_q|to_k|to_v|to_out\.0)|resnets\.\d+\.(conv1|conv2))"
SC_NAME = "SC-Tuner (decoder skips)"


def regions(unet: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
    """The U-Net's top-level parts, by where they sit relative to the skip connections."""
    return {"time embedding": [unet.time_proj, unet.time_embedding],
            "encoder": [unet.conv_in, *unet.down_blocks, unet.mid_block],
            "decoder": [*unet.up_blocks, unet.conv_norm_out, unet.conv_out]}


def saved_bytes_by_region(model: torch.nn.Module, unet: torch.nn.Module, loss_fn: Callable, batch: Any) -> dict:
    """One train forward + backward of `model` (whose U-Net is `unet`): {"saved": bytes of distinct
    storages saved for backward per region (parameters excluded; "outside the U-Net" for the loss and
    text encoder), "encoder_outputs_need_grad": whether any down/mid block output requires grad}."""
    stack: list[str] = []
    handles, encoder_outputs_need_grad = [], []

    def tensors(out: Any):
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, (tuple, list)):
                yield from tensors(t)
            elif isinstance(t, torch.Tensor):
                yield t

    for region, modules in regions(unet).items():
        for module in modules:
            handles.append(module.register_forward_pre_hook(lambda m, a, r=region: stack.append(r)))
            handles.append(module.register_forward_hook(lambda m, a, out: stack.pop() and None))  # None: keep output
    for block in [*unet.down_blocks, unet.mid_block]:
        handles.append(block.register_forward_hook(
            lambda m, a, out: encoder_outputs_need_grad.extend(t.requires_grad for t in tensors(out))))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen, totals = set(), {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in seen and key not in params:
            seen.add(key)
            region = stack[-1] if stack else "outside the U-Net"
            totals[region] = totals.get(region, 0) + t.untyped_storage().nbytes()
        return t

    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = loss_fn(model, batch)
        loss.backward()
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
    return {"saved": totals, "encoder_outputs_need_grad": any(encoder_outputs_need_grad)}


def _n_trainable(model: torch.nn.Module) -> int:
    return bench.count_parameters(model)[0]


def lora_rank_for(unet: torch.nn.Module, target: str, budget: int, ranks: range = range(1, 33)) -> int:
    """The LoRA rank (on `target` of a copy of `unet`) whose trainable count is closest to `budget`."""
    counts = {r: _n_trainable(Swift.prepare_model(copy.deepcopy(unet), LoRAConfig(r=r, lora_alpha=r,
                                                                                  target_modules=target)))
              for r in ranks}
    return min(counts, key=lambda r: abs(counts[r] - budget))


def sd_layout_unet(like: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A diffusers `UNet2DConditionModel` with SD v1.5's block layout (cross-attention in the three
    high-resolution down blocks, two resnets per down block, three per up block) at a small width,
    with `like`'s sample size, channels and text width; random weights (memory does not depend on
    them)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=like.config.sample_size, in_channels=like.config.in_channels,
        out_channels=like.config.out_channels, block_out_channels=(16, 32, 32, 32), layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=like.config.cross_attention_dim, attention_head_dim=8, norm_num_groups=8)


def compare_memory(unet: torch.nn.Module, batch_fn: Callable[[], Any], loss_fn: Callable, steps: int = 2,
                   warmup: int = 1, progress: bool = True) -> dict[str, Any]:
    """SC-Tuner on the decoder skips (`down_ratio=1.0`) against LoRA on attention + conv and on
    attention only, each at the rank closest to the SC-Tuner's trainable count, on copies of `unet`
    (left untouched), same batches and loss. Returns {"rows": bench rows (SC-Tuner first, then the
    two LoRAs), "breakdown": {name: saved_bytes_by_region(...)}, "ranks", "budget", "sc_over_lora"
    (peak memory against LoRA on attention + conv), "sc_over_lora_attention", "block_out_channels",
    "layers_per_block", "image_size", "batch_size"}."""
    from tqdm.auto import tqdm

    sc_config = SCETuningConfig(dims=list(unet_skip_widths(unet).values()), target_modules=r"up_blocks\.\d+\.resnets\.\d+")
    models = {SC_NAME: Swift.prepare_model(copy.deepcopy(unet), sc_config)}
    budget = _n_trainable(models[SC_NAME])
    ranks = {}
    for label, target in (("LoRA (attention + conv)", ATTENTION_AND_CONV), ("LoRA (attention only)", ATTENTION)):
        ranks[label] = r = lora_rank_for(unet, target, budget)
        models[f"{label}, r={r}"] = Swift.prepare_model(copy.deepcopy(unet), LoRAConfig(r=r, lora_alpha=r,
                                                                                        target_modules=target))
    rows, breakdown = [], {}
    for name, model in tqdm(models.items(), desc="measuring memory", disable=not progress):
        rows.append(bench.measure(model, batch_fn, loss_fn, name=name, steps=steps, warmup=warmup))
        breakdown[name] = saved_bytes_by_region(model, model.base_model, loss_fn, batch_fn())
    return {"rows": rows, "breakdown": breakdown, "ranks": ranks, "budget": budget,
            "sc_over_lora": rows[0]["peak_memory_bytes"] / rows[1]["peak_memory_bytes"],
            "sc_over_lora_attention": rows[0]["peak_memory_bytes"] / rows[2]["peak_memory_bytes"],
            "block_out_channels": list(unet.config.block_out_channels),
            "layers_per_block": unet.config.layers_per_block, "image_size": unet.config.sample_size,
            "batch_size": bench._batch_size(batch_fn())}


def _split(saved: dict[str, int]) -> tuple[int, int, int]:
    encoder, decoder = saved.get("encoder", 0), saved.get("decoder", 0)
    return encoder, decoder, sum(saved.values()) - encoder - decoder


def memory_report(result: dict[str, Any]) -> str:
    """`compare_memory`'s result as a markdown table (MiB) with the ratio line."""
    mib = 2 ** 20
    lines = [f"{result['image_size']} px, block_out_channels={result['block_out_channels']}, layers_per_block="
             f"{result['layers_per_block']}, batch {result['batch_size']}, AdamW; SC-Tuner budget {result['budget']:,} "
             f"trainable params", "",
             "| method | trainable params | peak train memory (MiB) | ratio to LoRA (attention + conv) | "
             "saved for backward: encoder (MiB) | decoder (MiB) | time emb. + loss (MiB) | encoder outputs need grad |",
             "|---|---|---|---|---|---|---|---|"]
    base = result["rows"][1]["peak_memory_bytes"]
    for row in result["rows"]:
        encoder, decoder, other = _split(result["breakdown"][row["name"]]["saved"])
        lines.append(f"| {row['name']} | {row['trainable_params']:,} | {row['peak_memory_bytes'] / mib:.2f} | "
                     f"{row['peak_memory_bytes'] / base:.3f} | {encoder / mib:.2f} | {decoder / mib:.2f} | "
                     f"{other / mib:.2f} | {result['breakdown'][row['name']]['encoder_outputs_need_grad']} |")
    lines += ["", f"SC-Tuner / LoRA (attention + conv) peak train memory: **{result['sc_over_lora']:.3f}** "
              f"(paper: 30-50 % less); SC-Tuner / LoRA (attention only): **{result['sc_over_lora_attention']:.3f}**"]
    return "\n".join(lines)


def memory_figure(results: dict[str, dict[str, Any]]):
    """One panel per U-Net ({title: compare_memory result}): a stacked horizontal bar per method,
    parameters | gradients + AdamW state | saved for backward in the encoder | in the decoder |
    elsewhere (time embedding, loss), in MiB, with the ratio to LoRA (attention + conv) at the end.
    Returns the figure."""
    import matplotlib.pyplot as plt

    parts = [("parameters", "#bbbbbb"), ("gradients + AdamW state", "#8c8c8c"),
             ("saved for backward: encoder", "#d62728"), ("saved for backward: decoder", "#1f77b4"),
             ("saved for backward: elsewhere", "#9edae5")]
    fig, axes = plt.subplots(len(results), 1, figsize=(9, 1.9 * len(results) + 0.8), squeeze=False)
    mib = 2 ** 20
    for ax, (title, result) in zip(axes[:, 0], results.items()):
        rows = result["rows"]
        base = rows[1]["peak_memory_bytes"]
        for y, row in enumerate(rows):
            counts = row["memory_parts_bytes"] or {}
            encoder, decoder, other = _split(result["breakdown"][row["name"]]["saved"])
            values = [counts.get("parameters", 0), counts.get("gradients", 0) + counts.get("optimizer state", 0),
                      encoder, decoder, other]
            left = 0.0
            for (label, colour), value in zip(parts, values):
                ax.barh(y, value / mib, left=left, color=colour, label=label if y == 0 else None)
                left += value / mib
            ax.text(row["peak_memory_bytes"] / mib, y, f"  {row['peak_memory_bytes'] / base:.2f}×", va="center")
        ax.set_yticks(range(len(rows)), [r["name"] for r in rows])
        ax.invert_yaxis()
        ax.set_xlim(0, max(r["peak_memory_bytes"] for r in rows) / mib * 1.15)
        ax.set_title(f"{title}: batch {result['batch_size']}, {result['image_size']} px", fontsize=10)
        ax.set_xlabel("training memory (MiB, CPU count)")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1 / len(results) + 0.04, 1, 1))
    return fig
