"""sd-tiny: its quality figures (recomputed from the shipped weights) and SC-Tuner vs LoRA training memory on it.

    HF_HUB_OFFLINE=1 python benchmarks/sd_tiny.py [--batch 32] [--steps 3] [--no-quality] [--quick]

Quality. ``zoo.load("sd-tiny")`` (diffusers' ``StableDiffusionPipeline``) samples one-object prompts of the
32-px scenes world with classifier-free guidance, through diffusers' own ``pipe.__call__``; the
``SceneJudge`` shipped beside it (trained on real renders only) names shape, colour, position, style and
size of every sample. The script recomputes those match rates from the shipped weights and prints them
beside the stamp's (they must agree: the stamp is not trusted), with the sample count, the judge's own
accuracy on real renders, and the VAE's reconstruction error.

Memory (SCEdit, arXiv:2312.11392: 30-50 % less training memory than LoRA): ``swiftlite.diffusion.memory.
compare_memory`` on sd-tiny's U-Net (SD v1.5's block layout, 8×8×4 latents), the shapes world's
text-to-image loss with the VAE encoding the images (``TextToImageLoss.for_pipeline``), SC-Tuner on the
decoder skips against LoRA on attention + conv at the rank whose trainable count is closest (a matched
budget), and LoRA on attention only. Peak memory on CPU = parameters + tensors saved for backward +
gradients + AdamW state (``swiftlite.bench.measure``). Not a test: it prints the tables for the README.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np
import torch


def quality() -> dict[str, Any]:
    """{"stamp": the stamped figures, "recomputed": the same figures measured again from the saved weights}."""
    from swiftlite import zoo
    from swiftlite.zoo import sd

    directory = zoo.path("sd-tiny")
    stamp = zoo.read_stamp(directory)
    p = stamp["params"]
    pipe, judge = zoo.load("sd-tiny"), sd.load_judge(directory)
    prompts, wanted = sd.eval_prompts(p, p["n_eval_prompts"], p["seed"] + 40_000)
    samples = sd.sample_prompts(pipe, prompts, steps=p["sampling_steps"], guidance_scale=p["guidance_scale"],
                                seed=p["seed"])
    return {"stamp": stamp, "recomputed": {**sd.adherence(samples, wanted, judge), "n_samples": float(len(prompts))}}


def sample_figure(path: str = "figures/sd_tiny_samples.png", seed: int = 0):
    """A grid of sd-tiny samples: one row per prompt, four seeds each (diffusers' pipe.__call__, CFG 3)."""
    from swiftlite import zoo
    from swiftlite.diffusion import sample_grid
    from swiftlite.zoo import sd

    pipe = zoo.load("sd-tiny")
    p = zoo.read_stamp(zoo.path("sd-tiny"))["params"]
    prompts = ["a large red circle at the top left", "a large blue striped square at the bottom right",
               "a medium yellow dotted triangle in the center on a white background",
               "a large green outlined cross at the top", "a medium red square at the left and a large blue circle at the right"]
    rows = {f"prompt {i + 1}": sd.sample_prompts(pipe, [prompt] * 6, steps=p["sampling_steps"],
                                                 guidance_scale=p["guidance_scale"], seed=seed)
            for i, prompt in enumerate(prompts)}
    title = "sd-tiny, 6 seeds per prompt, CFG 3\n" + "\n".join(f"{i + 1}: {q}" for i, q in enumerate(prompts))
    fig = sample_grid(rows, title=title, cell_inches=1.0)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def memory(batch_size: int = 32, steps: int = 3, warmup: int = 1, seed: int = 0, progress: bool = True,
           random_weights: bool = False) -> dict:
    """compare_memory on sd-tiny's U-Net (see the module docstring); ``random_weights``: the full recipe's
    architecture freshly initialised instead of the trained weights (memory depends on shapes only)."""
    from swiftlite import zoo
    from swiftlite.diffusion import TextToImageLoss, text_to_image_dataset
    from swiftlite.diffusion.memory import compare_memory
    from swiftlite.zoo import sd

    torch.manual_seed(seed)
    if random_weights:
        p = sd.FULL if not zoo.quick_mode() else sd.QUICK
        tokenizer = sd.clip_tokenizer(p["max_length"])
        pipe = sd.assemble(*_order(sd.make_models(p, tokenizer), tokenizer))
    else:
        pipe = zoo.load("sd-tiny")
    pipe.text_encoder.requires_grad_(False), pipe.vae.requires_grad_(False)
    data = text_to_image_dataset(pipe.tokenizer, 4 * batch_size, style="stripes", image_size=32, seed=seed)
    loss_fn = TextToImageLoss.for_pipeline(pipe)
    g = torch.Generator().manual_seed(seed)

    def batch_fn():
        return data[torch.randint(0, len(data), (batch_size,), generator=g).tolist()]

    return compare_memory(pipe.unet, batch_fn, loss_fn, steps, warmup, progress)


def _order(parts, tokenizer):
    vae, text_encoder, unet, scheduler = parts
    return vae, text_encoder, tokenizer, unet, scheduler


def main() -> None:
    from swiftlite.diffusion.memory import memory_report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-quality", action="store_true", help="skip recomputing the quality figures")
    parser.add_argument("--random-weights", action="store_true",
                        help="memory on the full recipe's architecture with fresh weights (no build needed)")
    parser.add_argument("--figure", action="store_true", help="also write figures/sd_tiny_samples.png")
    parser.add_argument("--quick", action="store_true", help="SWIFTLITE_QUICK=1 zoo build, batch 4, 1 step")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warmup = 1
    if args.quick:
        os.environ["SWIFTLITE_QUICK"] = "1"
        args.batch, args.steps, warmup = 4, 1, 0
    if not args.no_quality:
        start = time.perf_counter()
        q = quality()
        f, stamp = q["stamp"]["figures"], q["stamp"]
        print(f"### sd-tiny quality (built in {stamp['build_seconds'] / 60:.1f} min, {stamp['torch_threads']} thread; "
              f"recomputed in {time.perf_counter() - start:.0f} s)\n")
        print("| figure | stamp | recomputed now |\n|---|---|---|")
        for key in ("prompt_match", "shape_match", "colour_match", "position_match", "style_match", "size_match",
                    "all_match", "n_samples"):
            print(f"| {key} | {f[key]:.3f} | {q['recomputed'][key]:.3f} |")
        for key in sorted(f):
            if key.startswith(("judge_", "vae_recon", "prompt_match_guidance", "chance", "n_vae", "n_param", "text_",
                                   "n_text")):
                print(f"| {key} | {f[key]:.4g} | |")
    if args.figure:
        print("wrote", sample_figure())
    result = memory(args.batch, args.steps, warmup, random_weights=args.random_weights)
    print(f"\n### SC-Tuner vs LoRA on sd-tiny's U-Net\n\n{memory_report(result)}\n\nLoRA ranks {result['ranks']}")
    print(f"\ntorch {torch.__version__}, threads {torch.get_num_threads()}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
