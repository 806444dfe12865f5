"""``unet-tiny``: a text-conditioned diffusers ``UNet2DConditionModel`` in **pixel space, 16×16**,
with a ``DDPMScheduler`` (cosine schedule, v-prediction), a tiny ``CLIPTextModel`` text encoder and a
word-level tokenizer, trained jointly on plain-style shapes-world captions
("a red circle at the top left").

Training objective (v-prediction, Salimans & Ho, arXiv:2202.00512), with x₀ the image in [-1, 1]:

    x_t = √ᾱ_t x₀ + √(1-ᾱ_t) ε,   v = √ᾱ_t ε − √(1-ᾱ_t) x₀,   L = ‖v_θ(x_t, t, c) − v‖²

The caption is replaced by the empty prompt with probability ``p_uncond`` so the same network
also learns the unconditional model used by classifier-free guidance. The loss is
:class:`swiftlite.diffusion.TextToImageLoss` (the one every U-Net fine-tuning uses), here with the
``ModuleDict(unet=…, text_encoder=…)`` so both are trained. An EMA of the weights is
kept (``ema``) and is what gets saved.

Quality figure: ``prompt_match`` = fraction of generated samples (CFG with w = 1.5, 25 DDIM
steps; also reported for w = 1 and w = 3 — a first build showed w = 3 over-saturates) in which a separately
trained :class:`~swiftlite.zoo.judge.ShapeColourJudge` sees *both* the prompted shape and colour;
the judge's own accuracy on real images is reported too. The judge is saved under ``judge/``.

``load("unet-tiny")`` returns a :class:`~swiftlite.zoo.pipeline.TinyDiffusionPipeline`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..data.shapes import BACKGROUNDS, COLOURS, POSITIONS, SHAPES, SIZES, shapes_dataset, world_prompts
from .recipe import Recipe, register

# the caption vocabulary covers every factor of the shapes world, plus spare words for new concepts
SPECIAL = ["<pad>", "<unk>", "<bos>", "<eos>"]  # eos id 3 (CLIP's legacy pooling assumes eos == 2)
SPARE_WORDS = ["sks", "<concept-0>", "<concept-1>", "<concept-2>", "<concept-3>"]

FULL: dict[str, Any] = dict(image_size=16, shapes=["circle", "square", "triangle"],
                            colours=["red", "green", "blue", "yellow"], sizes=["large"],
                            block_out_channels=[16, 32, 32], layers_per_block=1, text_dim=64,
                            text_layers=2, n_train=20_000, steps=2500, batch_size=32, lr=2e-3,
                            warmup_steps=100, ema=0.995, p_uncond=0.15, judge_steps=500,
                            samples_per_prompt=8, sampling_steps=25, guidance_scale=1.5,
                            extra_guidance_scales=[1.0, 3.0], seed=0)
QUICK: dict[str, Any] = dict(image_size=16, shapes=["circle", "square", "triangle"],
                             colours=["red", "green", "blue", "yellow"], sizes=["large"],
                             block_out_channels=[16, 32], layers_per_block=1, text_dim=32,
                             text_layers=1, n_train=600, steps=40, batch_size=16, lr=2e-3,
                             warmup_steps=5, ema=None, p_uncond=0.15, judge_steps=30,
                             samples_per_prompt=1, sampling_steps=8, guidance_scale=1.5,
                             extra_guidance_scales=[], seed=0)


def caption_tokenizer(max_length: int = 12):
    """A word-level ``PreTrainedTokenizerFast`` over every word a shapes-world caption can use."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["a", "an", "at", "the", "in", "on", "of", "background", "paper", "outlined", "striped",
             "dotted", "pastel", "inked"]
    for group in (SHAPES, COLOURS, SIZES, BACKGROUNDS):
        words += list(group)
    words += [w for p in POSITIONS for w in p.split()]
    vocab = {w: i for i, w in enumerate(SPECIAL + sorted(set(words)) + SPARE_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>", pad_token="<pad>", model_max_length=max_length)


def _models(p: dict[str, Any], tokenizer):
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    n = len(p["block_out_channels"])
    unet = UNet2DConditionModel(
        sample_size=p["image_size"], in_channels=3, out_channels=3,
        block_out_channels=tuple(p["block_out_channels"]), layers_per_block=p["layers_per_block"],
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=p["text_dim"], attention_head_dim=8, norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=p["text_dim"], intermediate_size=2 * p["text_dim"],
        num_hidden_layers=p["text_layers"], num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                              prediction_type="v_prediction", clip_sample=True)
    return unet, text_encoder, scheduler


def prompt_match(pipe, judge, shapes, colours, *, samples_per_prompt: int, steps: int,
                 guidance_scale: float, seed: int = 0) -> dict[str, float]:
    """Generate for every (shape, colour) prompt and score with the judge."""
    prompts, wanted_shapes, wanted_colours = world_prompts(shapes, colours, samples_per_prompt, seed)
    wanted = list(zip(wanted_shapes, wanted_colours))
    images = np.concatenate([pipe(prompts[i:i + 48], num_inference_steps=steps, guidance_scale=guidance_scale,
                                  seed=seed + i) for i in range(0, len(prompts), 48)])
    got_shape, got_colour = judge.predict(images)
    shape_ok = np.array([g == w[0] for g, w in zip(got_shape, wanted)])
    colour_ok = np.array([g == w[1] for g, w in zip(got_colour, wanted)])
    return {"prompt_match": float((shape_ok & colour_ok).mean()), "shape_match": float(shape_ok.mean()),
            "colour_match": float(colour_ok.mean()), "n_samples": float(len(prompts))}


def build(out_dir: Path, p: dict[str, Any], progress: bool, part_dirs: dict[str, Path]) -> dict[str, float]:
    # torch, diffusers and the training loop load here, when a build runs: `swiftlite zoo list` stays light
    import torch

    from .. import train as training
    from ..diffusion.training import TextToImageLoss
    from .judge import train_judge
    from .pipeline import TinyDiffusionPipeline

    tokenizer = caption_tokenizer()
    torch.manual_seed(p["seed"])
    unet, text_encoder, scheduler = _models(p, tokenizer)
    data = shapes_dataset(p["n_train"], image_size=p["image_size"], seed=p["seed"], shapes=p["shapes"],
                          colours=p["colours"], sizes=p["sizes"], backgrounds=("black",), maps=False)
    ids = tokenizer(list(data["caption"]), padding="max_length", max_length=tokenizer.model_max_length)["input_ids"]
    train_set = data.select_columns(["image"]).add_column("input_ids", ids).with_format("torch")
    empty = torch.tensor(tokenizer("", padding="max_length", max_length=tokenizer.model_max_length)["input_ids"])
    model = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder})
    loss_fn = TextToImageLoss(scheduler, p_uncond=p["p_uncond"], empty_ids=empty)  # v-prediction: the scheduler's
    history = training.train(model, train_set, loss_fn, steps=p["steps"],
                             batch_size=p["batch_size"], lr=p["lr"], warmup_steps=p["warmup_steps"],
                             ema=p["ema"], seed=p["seed"], progress=progress)
    unet.eval(), text_encoder.eval()
    pipe = TinyDiffusionPipeline(unet=unet, scheduler=scheduler, text_encoder=text_encoder, tokenizer=tokenizer,
                                 image_size=p["image_size"])
    judge, figures = train_judge(p["image_size"], n_train=4 * p["n_train"] // 5, steps=p["judge_steps"],
                                 seed=p["seed"], sizes=p["sizes"])
    figures.update(prompt_match(pipe, judge, p["shapes"], p["colours"], samples_per_prompt=p["samples_per_prompt"],
                                steps=p["sampling_steps"], guidance_scale=p["guidance_scale"], seed=p["seed"]))
    for scale in p["extra_guidance_scales"]:  # context: no guidance, stronger guidance
        sweep = prompt_match(pipe, judge, p["shapes"], p["colours"], samples_per_prompt=p["samples_per_prompt"],
                             steps=p["sampling_steps"], guidance_scale=scale, seed=p["seed"])
        figures[f"prompt_match_guidance_{scale:g}"] = sweep["prompt_match"]
    figures["chance_prompt_match"] = 1.0 / (len(p["shapes"]) * len(p["colours"]))
    figures["final_train_loss"] = float(np.mean(history.loss[-20:]))
    figures["n_parameters_unet"] = float(sum(t.numel() for t in unet.parameters()))
    figures["n_parameters_text_encoder"] = float(sum(t.numel() for t in text_encoder.parameters()))
    pipe.save_pretrained(out_dir)
    judge.save_pretrained(out_dir / "judge")
    return figures


def load(directory: Path):
    from .pipeline import TinyDiffusionPipeline  # torch and diffusers: loaded on first use, as in build

    return TinyDiffusionPipeline.from_pretrained(directory)


def load_judge(directory: Path):
    """The shape/colour judge saved with ``unet-tiny`` (for scoring samples of a tuned U-Net)."""
    from .judge import ShapeColourJudge  # torch: loaded on first use, as in build

    return ShapeColourJudge.from_pretrained(Path(directory) / "judge")


RECIPE = register(Recipe(
    name="unet-tiny", version=1, full=FULL, quick=QUICK, build=build, load=load,
    description="UNet2DConditionModel (pixel space, 16 px, v-prediction) + DDPMScheduler + tiny CLIPTextModel",
    targets={"prompt_match": ">= 0.70 (full build, CFG)"},
))
