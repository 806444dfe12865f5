"""SC-Tuner vs LoRA: peak training memory on the same U-Net and batch, and why (SCEdit's memory claim).

    HF_HUB_OFFLINE=1 python benchmarks/scedit_memory.py [--batch 32] [--steps 3] [--quick]

SCEdit (arXiv:2312.11392) tunes only the skip connections: every tuner sits in the decoder and reads
features of the frozen encoder, so backward never enters the encoder and the encoder keeps no
activations for it. LoRA on the U-Net's attention and conv layers has tuners in the encoder too, so
backward runs through the whole U-Net. On `unet-tiny` (zoo), with the shapes world's text-to-image loss
(`swiftlite.diffusion.TextToImageLoss`, frozen text encoder), this script measures in one run:

* peak train memory of each method with `swiftlite.bench.measure` (on CPU: params + tensors saved for
  backward + grads + AdamW state; see swiftlite/bench.py), as a ratio SC-Tuner / LoRA;
* the breakdown: the bytes autograd saves for backward, attributed to the U-Net region whose forward
  saved them (time embedding, encoder = conv_in + down blocks + mid block, decoder = up blocks + output
  convs), and whether any encoder output needs a gradient.

LoRA's rank is the one whose trainable parameter count is closest to the SC-Tuner's (a comparable
budget); LoRA on attention only is reported beside it. The same comparison runs on a second U-Net with
SD-1.5's block layout (attention in the high-resolution encoder blocks, 2 resnets per down block, 3 per
up block) at unet-tiny's widths: unet-tiny's encoder is shallow (1 resnet per down block against 2 per
up block, no attention at full resolution), which bounds what skipping the encoder can save. Not a test: it prints the table for
benchmarks/README.md and returns the rows (tutorial 06 / 07 can call `run()`).
"""
from __future__ import annotations

import argparse
import os
import re
from typing import Any

import torch

ATTENTION = r".*attn\d\.(to_q|to_k|to_v|to_out\.0)"
ATTENTION_AND_CONV = r".*(attn\d\.(to_q|to_k|to_v|to_out\.0)|resnets\.\d+\.(conv1|conv2))"


def regions(unet: torch.nn.Module) -> dict[str, list[torch.nn.Module]]:
    """The U-Net's top-level parts, by where they sit relative to the skip connections."""
    return {"time embedding": [unet.time_proj, unet.time_embedding],
            "encoder (conv_in, down blocks, mid block)": [unet.conv_in, *unet.down_blocks, unet.mid_block],
            "decoder (up blocks, conv_norm_out, conv_out)": [*unet.up_blocks, unet.conv_norm_out, unet.conv_out]}


def saved_bytes_by_region(model: torch.nn.Module, unet: torch.nn.Module, loss_fn: Any, batch: Any) -> dict[str, Any]:
    """One train forward + backward: bytes of distinct storages saved for backward, per U-Net region
    (parameters excluded), and whether any encoder output requires grad."""
    stack: list[str] = []
    handles, encoder_outputs_need_grad = [], []
    for region, modules in regions(unet).items():
        for module in modules:
            handles.append(module.register_forward_pre_hook(lambda m, a, r=region: stack.append(r)))
            handles.append(module.register_forward_hook(lambda m, a, out: stack.pop() and None))  # None: keep the output
    for block in [*unet.down_blocks, unet.mid_block]:
        handles.append(block.register_forward_hook(lambda m, a, out: encoder_outputs_need_grad.extend(
            t.requires_grad for t in (out if isinstance(out, tuple) else (out,)) for t in
            (t if isinstance(t, tuple) else (t,)) if isinstance(t, torch.Tensor))))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen, totals = set(), {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in seen and key not in params:
            seen.add(key)
            region = stack[-1] if stack else "outside the U-Net (loss)"
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


def lora_rank_for(unet_factory: Any, target: str, budget: int) -> int:
    """The LoRA rank whose trainable parameter count is closest to `budget`."""
    from swiftlite.tuners import LoRAConfig, Swift

    best = None
    for r in range(1, 33):
        n = sum(p.numel() for p in Swift.prepare_model(unet_factory(), LoRAConfig(r=r, lora_alpha=r, target_modules=target))
                .adapter_parameters("default").values())
        if best is None or abs(n - budget) < abs(best[1] - budget):
            best = (r, n)
    return best[0]


def sd_layout_unet(like: torch.nn.Module) -> torch.nn.Module:
    """A U-Net with SD-1.5's block layout (attention in the three high-resolution down blocks, two resnets per
    down block, three per up block) at unet-tiny's widths, sample size and text width; random weights
    (memory does not depend on the weights)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=like.config.sample_size, in_channels=3, out_channels=3, block_out_channels=(16, 32, 32, 32),
        layers_per_block=2, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=like.config.cross_attention_dim, attention_head_dim=8, norm_num_groups=8)


def compare_on(unet: torch.nn.Module, batch_fn: Any, loss_fn: Any, steps: int, warmup: int, progress: bool) -> dict:
    """SC-Tuner vs LoRA (attention + conv, attention only) at the closest budget on copies of `unet`."""
    import copy

    from swiftlite import bench
    from swiftlite.tuners import LoRAConfig, SCETuningConfig, Swift
    from swiftlite.tuners.scetuning import unet_skip_widths

    def fresh():
        return copy.deepcopy(unet)

    sc_config = SCETuningConfig(dims=list(unet_skip_widths(unet).values()), target_modules=r"up_blocks\.\d+\.resnets\.\d+")
    models = {"SC-Tuner (decoder skips)": Swift.prepare_model(fresh(), sc_config)}
    budget = sum(p.numel() for p in models["SC-Tuner (decoder skips)"].adapter_parameters("default").values())
    ranks = {}
    for label, target in (("LoRA (attention + conv)", ATTENTION_AND_CONV), ("LoRA (attention only)", ATTENTION)):
        ranks[label] = r = lora_rank_for(fresh, target, budget)
        models[f"{label}, r={r}"] = Swift.prepare_model(fresh(), LoRAConfig(r=r, lora_alpha=r, target_modules=target))
    rows, breakdown = [], {}
    for name, model in models.items():
        if progress:
            print(f"measuring {name} ...", flush=True)
        rows.append(bench.measure(model, batch_fn, loss_fn, name=name, steps=steps, warmup=warmup))
        breakdown[name] = saved_bytes_by_region(model, model.base_model, loss_fn, batch_fn())
    return {"rows": rows, "breakdown": breakdown, "ranks": ranks, "budget": budget,
            "sc_over_lora": rows[0]["peak_memory_bytes"] / rows[1]["peak_memory_bytes"],
            "sc_over_lora_attention": rows[0]["peak_memory_bytes"] / rows[2]["peak_memory_bytes"],
            "block_out_channels": list(unet.config.block_out_channels),
            "layers_per_block": unet.config.layers_per_block, "image_size": unet.config.sample_size}


def run(batch_size: int = 32, steps: int = 3, warmup: int = 1, seed: int = 0, progress: bool = True,
        sd_layout: bool = True) -> dict[str, Any]:
    """{"unet-tiny": comparison, "sd-layout": comparison (when sd_layout)}, same data, loss and batch."""
    from swiftlite import zoo
    from swiftlite.diffusion import TextToImageLoss, text_to_image_dataset

    torch.manual_seed(seed)
    pipe = zoo.load("unet-tiny")
    pipe.text_encoder.requires_grad_(False)
    data = text_to_image_dataset(pipe.tokenizer, 4 * batch_size, style="stripes", image_size=pipe.image_size, seed=seed)
    loss_fn = TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder)
    g = torch.Generator().manual_seed(seed)

    def batch_fn():
        return data[torch.randint(0, len(data), (batch_size,), generator=g).tolist()]

    out = {"unet-tiny": compare_on(pipe.unet, batch_fn, loss_fn, steps, warmup, progress)}
    if sd_layout:
        out["sd-layout"] = compare_on(sd_layout_unet(pipe.unet), batch_fn, loss_fn, steps, warmup, progress)
    for result in out.values():
        result["batch_size"] = batch_size
    return out


def report(result: dict[str, Any]) -> str:
    mib = 2 ** 20
    lines = [f"{result['image_size']} px, block_out_channels={result['block_out_channels']}, layers_per_block="
             f"{result['layers_per_block']}, batch {result['batch_size']}, AdamW; SC-Tuner budget {result['budget']:,} "
             f"trainable params", "",
             "| method | trainable params | peak train memory (MiB) | ratio to LoRA (attention + conv) | "
             "saved for backward: encoder (MiB) | decoder (MiB) | time emb. + loss (MiB) | encoder outputs need grad |",
             "|---|---|---|---|---|---|---|---|"]
    base = result["rows"][1]["peak_memory_bytes"]
    for row in result["rows"]:
        saved = result["breakdown"][row["name"]]["saved"]
        enc = sum(v for k, v in saved.items() if k.startswith("encoder"))
        dec = sum(v for k, v in saved.items() if k.startswith("decoder"))
        other = sum(saved.values()) - enc - dec
        lines.append(f"| {row['name']} | {row['trainable_params']:,} | {row['peak_memory_bytes'] / mib:.2f} | "
                     f"{row['peak_memory_bytes'] / base:.3f} | {enc / mib:.2f} | {dec / mib:.2f} | {other / mib:.2f} | "
                     f"{result['breakdown'][row['name']]['encoder_outputs_need_grad']} |")
    lines += ["", f"SC-Tuner / LoRA (attention + conv) peak train memory: **{result['sc_over_lora']:.3f}** "
              f"(target <= 0.7; paper: 30-50 % less); SC-Tuner / LoRA (attention only): "
              f"**{result['sc_over_lora_attention']:.3f}**"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-sd-layout", action="store_true", help="skip the SD-1.5-layout U-Net")
    parser.add_argument("--quick", action="store_true", help="SWIFTLITE_QUICK=1 zoo build, batch 4, 1 step")
    args = parser.parse_args()
    if args.quick:
        os.environ["SWIFTLITE_QUICK"] = "1"
        args.batch, args.steps, args.warmup = 4, 1, 0
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args.batch, args.steps, args.warmup, sd_layout=not args.no_sd_layout)
    for name, result in results.items():
        print(f"\n### {name}\n\n{report(result)}\n\nLoRA ranks {result['ranks']}")
    print(f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
