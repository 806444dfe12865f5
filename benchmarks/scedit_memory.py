"""SC-Tuner vs LoRA: peak training memory on the same U-Net and batch, and why (SCEdit's memory claim).

    HF_HUB_OFFLINE=1 python benchmarks/scedit_memory.py [--batch 32] [--steps 3] [--quick]

SCEdit (arXiv:2312.11392) tunes only the skip connections: every tuner sits in the decoder and reads
features of the frozen encoder, so backward never enters the encoder and the encoder keeps no
activations for it. LoRA on the U-Net's attention and conv layers has tuners in the encoder too, so
backward runs through the whole U-Net. On `unet-tiny` (zoo), with the shapes world's text-to-image loss
(`swiftlite.diffusion.TextToImageLoss`, frozen text encoder), this script measures in one run:

The measuring code is `swiftlite.diffusion.memory` (tutorial 06 runs it too); this script picks the
data and prints the tables:

* peak train memory of each method with `swiftlite.bench.measure` (on CPU: params + tensors saved for
  backward + grads + AdamW state; see swiftlite/bench.py), as a ratio SC-Tuner / LoRA;
* the breakdown: the bytes autograd saves for backward, attributed to the U-Net region whose forward
  saved them (time embedding, encoder = conv_in + down blocks + mid block, decoder = up blocks + output
  convs), and whether any encoder output needs a gradient.

LoRA's rank is the one whose trainable parameter count is closest to the SC-Tuner's (a comparable
budget); LoRA on attention only is reported beside it. The same comparison runs on a second U-Net with
SD-1.5's block layout (attention in the high-resolution encoder blocks, 2 resnets per down block, 3 per
up block) at unet-tiny's widths: unet-tiny's encoder is shallow (1 resnet per down block against 2 per
up block, no attention at full resolution), which bounds what skipping the encoder can save. Not a
test: it prints the tables for benchmarks/README.md.
"""
from __future__ import annotations

import argparse
import os
from typing import Any

import torch


def run(batch_size: int = 32, steps: int = 3, warmup: int = 1, seed: int = 0, progress: bool = True,
        sd_layout: bool = True) -> dict[str, Any]:
    """{"unet-tiny": comparison, "sd-layout": comparison (when sd_layout)}, same data, loss and batch."""
    from swiftlite import zoo
    from swiftlite.diffusion import TextToImageLoss, text_to_image_dataset
    from swiftlite.diffusion.memory import compare_memory, sd_layout_unet

    torch.manual_seed(seed)
    pipe = zoo.load("unet-tiny")
    pipe.text_encoder.requires_grad_(False)
    data = text_to_image_dataset(pipe.tokenizer, 4 * batch_size, style="stripes", image_size=pipe.image_size, seed=seed)
    loss_fn = TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder)
    g = torch.Generator().manual_seed(seed)

    def batch_fn():
        return data[torch.randint(0, len(data), (batch_size,), generator=g).tolist()]

    out = {"unet-tiny": compare_memory(pipe.unet, batch_fn, loss_fn, steps, warmup, progress)}
    if sd_layout:
        out["sd-layout"] = compare_memory(sd_layout_unet(pipe.unet), batch_fn, loss_fn, steps, warmup, progress)
    return out


def main() -> None:
    from swiftlite.diffusion.memory import memory_report

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
        print(f"\n### {name}\n\n{memory_report(result)}\n\nLoRA ranks {result['ranks']}")
    print(f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
