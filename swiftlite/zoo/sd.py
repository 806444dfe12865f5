"""``sd-tiny``: a real diffusers ``StableDiffusionPipeline`` at laptop scale, trained here on 32-px
shapes-world scenes (:mod:`swiftlite.data.scenes`).

Latent diffusion (Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models",
arXiv:2112.10752): an autoencoder maps an image x (3×32×32) to a latent z (4×8×8), and the denoiser
works on z; CLIP-style token embeddings c of the caption enter every cross-attention layer::

    z = s · E(x)            (E: AutoencoderKL encoder mean, s = vae.config.scaling_factor = 1 / std(E(x)))
    z_t = √ᾱ_t z + √(1−ᾱ_t) ε,   v = √ᾱ_t ε − √(1−ᾱ_t) z,   L = ‖v_θ(z_t, t, c) − v‖²
    x̂ = D(ẑ₀ / s)

Parts, all diffusers / transformers classes, saved with ``save_pretrained`` as any SD folder
(``vae/ text_encoder/ tokenizer/ unet/ scheduler/ model_index.json``):

* ``AutoencoderKL`` (3 levels → 8×8 latents, 4 channels; 8×8 rather than 16×16 makes the U-Net 4× cheaper
  on this CPU, and the decoder still draws 2-px stripes and dots back, see ``vae_*`` figures);
* ``CLIPTokenizer`` whose BPE vocabulary and merges are trained here (``tokenizers``) on the scene
  words (each one token), and a ``CLIPTextModel`` (2 layers, width 64);
* ``UNet2DConditionModel`` with SD v1.5's block types — 3 × ``CrossAttnDownBlock2D`` + ``DownBlock2D``,
  ``UNetMidBlock2DCrossAttn``, ``UpBlock2D`` + 3 × ``CrossAttnUpBlock2D``, two resnets per down block —
  at small width;
* ``DDIMScheduler`` with SD's ``scaled_linear`` betas and v-prediction (SD 2.x's choice; trailing
  timestep spacing, so sampling starts from pure noise).

Training recipe (``build``), four stages:

1. **VAE**: L = Σ w |D(μ(x)) − x| / Σ w + β · KL(q(z|x) ‖ N(0, I)), w = 1 + ``object_weight`` on object
   pixels (LDM's L1 reconstruction and small KL, no LPIPS / GAN term). Two changes from LDM, both measured:
   a first build (version 1) decoded z ~ q(z|x) with plain L1 for 800 steps and drew the objects grey
   (the judge named the colour of 25 % of reconstructions, chance); decoding the mean μ(x) — the latent the
   U-Net is trained on — and weighting the objects (small on a large background) brought a 250-step pilot's
   object-pixel error from 92 to 48 (0..255).
2. **Latents**: every training image is encoded once (posterior mean × s); the U-Net never sees pixels.
3. **Text encoder alone** (:func:`pretrain_text_encoder`): the ``CLIPTextModel`` learns to *name* what a
   caption says. Linear heads (:func:`caption_heads`) read each object's last token (its position word)
   and the pooled end-of-text token, and must give back every object's shape, colour, position, style and
   size and the background; L = Σ_heads cross-entropy. The captions are drawn as the scenes' are, half of
   them with a second object, so the encoder must keep two objects apart.
4. **U-Net under the frozen text encoder** (:class:`swiftlite.diffusion.TextToImageLoss` with
   ``text_encoder=``), the caption dropped to "" with probability ``p_uncond`` (classifier-free guidance).
   This is how Stable Diffusion itself is trained: its CLIP text encoder is pre-trained on its own and
   frozen.

Why stage 3 exists (recipe version 3). Version 2 trained the text encoder jointly with the U-Net, as
latent diffusion's own text-to-image model did (τ_θ and ε_θ "jointly optimized", arXiv:2112.10752 §3.3),
on the argument that template captions need no separate language model. Measured on that build
(benchmarks/sd_tiny_position_diagnosis.md): its samples got colour (97 %) and style (94 %) but position at
chance (16 %; chance 11 %) and shape at 36 % (chance 25 %). Swapping the position word changed the jointly
trained encoder's output by 4.5–21 % and the U-Net's prediction by under 2 %, so the U-Net never learned to
read position and took the layout from the starting noise. The position is visible in z_t only from
t ≈ 800 down, so the denoising loss rewards reading it from the text in few steps, and a jointly trained
encoder never gets a strong signal to tell the position phrases apart. An encoder first taught to name every
factor hands the U-Net text in which position is as distinct as colour: in a 500-step pilot the position of
same-noise samples rose from 11 % to 53–64 %. Built into this recipe, the full build's CFG samples get
position 100 % and shape 74 % (shape ∧ colour ∧ position 73 % of 192, stamped).

Quality figures (stamped, each with its sample count): a :class:`~swiftlite.zoo.judge.SceneJudge`
trained on real renders names shape, colour, position (3×3 grid), style and size of each CFG sample of
one-object prompts; ``prompt_match`` = shape ∧ colour ∧ position all right; the judge's own accuracy on
real images and on VAE reconstructions is stamped too, and the VAE's reconstruction error.

Differences from Stable Diffusion: 32-px images and 8×8 latents; a 100-odd-token BPE vocabulary; the text
encoder is pre-trained on supervised caption factors (SD's CLIP: contrastively on image–text pairs); v-prediction (SD v1.5: ε); the VAE
has no perceptual or adversarial loss; no safety checker. Weights are stored in float16 and loaded as
float32 (the figures are measured on the rounded weights).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..data.scenes import SCENE_STYLES, far_positions, object_phrase, scene_caption, scene_words, scenes_dataset
from ..data.shapes import POSITIONS, sample_content, to_pixel_values, to_uint8_images
from .recipe import Recipe, register

WORLD: dict[str, Any] = dict(shapes=["circle", "square", "triangle", "cross"], colours=["red", "green", "blue", "yellow"],
                             sizes=["medium", "large"], styles=["plain", "outline", "stripes", "dots"],
                             backgrounds=["black", "white"])
FULL: dict[str, Any] = dict(
    image_size=32, **WORLD, p_second=0.2, max_length=32,
    vae_channels=[16, 32, 64], vae_groups=8, latent_channels=4, n_vae=6000, vae_steps=1500, vae_batch=32,
    vae_lr=2e-3, kl_weight=1e-6, object_weight=10.0,
    unet_channels=[32, 32, 64, 64], layers_per_block=2, attention_head_dim=8, text_dim=64, text_layers=2,
    n_text=20_000, text_p_second=0.5, text_steps=800, text_batch=64, text_lr=2e-3, n_text_eval=1000,
    n_train=20_000, steps=2200, batch_size=32, lr=1e-3, warmup_steps=150, ema=0.997, p_uncond=0.1,
    judge_width=32, n_judge=10_000, judge_steps=1200, n_eval_prompts=192, n_vae_eval=500,
    sampling_steps=25, guidance_scale=3.0, extra_guidance_scales=[1.0], seed=0)
QUICK: dict[str, Any] = dict(
    image_size=32, **WORLD, p_second=0.2, max_length=32,
    vae_channels=[16, 32, 32], vae_groups=8, latent_channels=4, n_vae=256, vae_steps=15, vae_batch=16,
    vae_lr=2e-3, kl_weight=1e-6, object_weight=10.0,
    unet_channels=[16, 16, 32, 32], layers_per_block=1, attention_head_dim=8, text_dim=32, text_layers=1,
    n_text=1024, text_p_second=0.5, text_steps=60, text_batch=32, text_lr=3e-3, n_text_eval=256,
    n_train=256, steps=15, batch_size=16, lr=1e-3, warmup_steps=2, ema=None, p_uncond=0.1,
    judge_width=8, n_judge=256, judge_steps=10, n_eval_prompts=8, n_vae_eval=32,
    sampling_steps=4, guidance_scale=3.0, extra_guidance_scales=[1.0], seed=0)
SPECIAL = ["<|startoftext|>", "<|endoftext|>"]
ALPHABET = list("abcdefghijklmnopqrstuvwxyz0123456789")


def clip_tokenizer(max_length: int = 32, extra_words: tuple[str, ...] = ("sks",)):
    """A ``CLIPTokenizer`` whose BPE (CLIP's ``</w>`` end-of-word convention) is trained here on every
    scene word, so each of them is one token; other words fall back to letters (nothing downloaded)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer


    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>", unk_token=SPECIAL[1]))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=SPECIAL, initial_alphabet=ALPHABET,
                                  end_of_word_suffix="</w>", show_progress=False)
    bpe.train_from_iterator(scene_words() + list(extra_words), trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    for c in ALPHABET:  # CLIP keeps every character both inside a word and at its end
        for token in (c, c + "</w>"):
            vocab.setdefault(token, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[tuple(m) for m in model["merges"]], model_max_length=max_length)


def make_models(p: dict[str, Any], tokenizer):
    """(vae, text_encoder, unet, scheduler) with random weights, shaped by the recipe ``p``."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(p["seed"])
    n_vae = len(p["vae_channels"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n_vae,
                        up_block_types=("UpDecoderBlock2D",) * n_vae, block_out_channels=tuple(p["vae_channels"]),
                        layers_per_block=1, latent_channels=p["latent_channels"], norm_num_groups=p["vae_groups"],
                        sample_size=p["image_size"])
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=p["text_dim"], intermediate_size=2 * p["text_dim"],
        num_hidden_layers=p["text_layers"], num_attention_heads=4, max_position_embeddings=p["max_length"],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    c = p["unet_channels"]
    unet = UNet2DConditionModel(
        sample_size=p["image_size"] // 2 ** (n_vae - 1), in_channels=p["latent_channels"],
        out_channels=p["latent_channels"], block_out_channels=tuple(c), layers_per_block=p["layers_per_block"],
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),  # SD v1.5's block types
        mid_block_type="UNetMidBlock2DCrossAttn",
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=p["text_dim"], attention_head_dim=p["attention_head_dim"], norm_num_groups=min(32, c[0] // 2))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                              beta_end=0.012, prediction_type="v_prediction", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, timestep_spacing="trailing")
    return vae, text_encoder, unet, scheduler


def assemble(vae, text_encoder, tokenizer, unet, scheduler):
    """diffusers' own ``StableDiffusionPipeline`` from the parts (no safety checker, no feature extractor)."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def train_vae(vae, p: dict[str, Any], progress: bool) -> list[float]:
    """Stage 1: L = ‖D(z) − x‖₁ + β KL(q(z|x) ‖ N(0, I)) on scenes; returns the loss history."""
    # torch and the training loop load here, when a build runs: `swiftlite zoo list` stays light
    import torch

    from .. import train as training

    data = scenes_dataset(p["n_vae"], image_size=p["image_size"], seed=p["seed"] + 1, maps=True,
                          p_second=p["p_second"], **_world(p)).select_columns(["image", "mask"]).with_format("torch")

    def vae_loss(model, batch):
        x = to_pixel_values(batch["image"])  # (B, 3, H, W) in [-1, 1]
        posterior = model.encode(x).latent_dist
        z = posterior.mean  # μ(x): what the U-Net is trained on (see the module docstring)
        reconstruction = model.decode(z).sample
        w = 1.0 + p["object_weight"] * batch["mask"][:, None].float()  # (B, 1, H, W): object pixels count more
        # L = Σ w |D(μ) − x| / Σ w + β · KL(q(z|x) ‖ N(0, I))
        return (w * (reconstruction - x).abs()).mean() / w.mean() + p["kl_weight"] * posterior.kl().mean()

    history = training.train(vae, data, vae_loss, steps=p["vae_steps"], batch_size=p["vae_batch"], lr=p["vae_lr"],
                             warmup_steps=max(1, p["vae_steps"] // 20), seed=p["seed"], progress=progress)
    vae.eval()
    return history.loss


FACTORS = ("shape", "colour", "position", "style", "size")


def factor_values(p: dict[str, Any]) -> dict[str, list[str]]:
    """The values each caption factor takes in the recipe's world (``position``: the 3×3 grid's cells)."""
    return {"shape": list(p["shapes"]), "colour": list(p["colours"]), "position": list(POSITIONS),
            "style": list(SCENE_STYLES if "styles" not in p else p["styles"]), "size": list(p["sizes"]),
            "background": list(p["backgrounds"])}


def caption_dataset(p: dict[str, Any], n: int, seed: int, tokenizer):
    """``n`` scene captions, no pictures, with what they name (for the text-encoder stage).

    Objects are drawn as :func:`swiftlite.data.scenes.scenes_dataset` draws them (a second object, with
    probability ``text_p_second``, at least two cells away). Columns: ``input_ids`` (L); ``end_1`` /
    ``end_2``: the index of the last token of each object's phrase (its position word; ``end_2`` = 0 when
    there is one object); ``{factor}_1`` / ``{factor}_2``: each object's factors as class indices (object 2:
    ``len(values)`` = "no second object"); ``background``.
    """
    import datasets
    import numpy as np

    rng = np.random.default_rng(seed)
    values = factor_values(p)
    cols: dict[str, list] = {k: [] for k in ("caption", "end_1", "end_2", "background")}
    cols.update({f"{f}_{k}": [] for f in FACTORS for k in (1, 2)})
    world = dict(shapes=p["shapes"], colours=p["colours"], sizes=p["sizes"])
    for _ in range(n):
        first = sample_content(rng, p["image_size"], backgrounds=p["backgrounds"], **world)
        objects = [(first, values["style"][rng.integers(len(values["style"]))])]
        second_at = far_positions(first.position, list(POSITIONS))
        if second_at and rng.random() < p["text_p_second"]:
            second = sample_content(rng, p["image_size"], positions=second_at, backgrounds=(first.background,), **world)
            objects.append((second, values["style"][rng.integers(len(values["style"]))]))
        cols["caption"].append(scene_caption(objects, first.background))
        end = 0  # token 0 is <|startoftext|>; each phrase's last token ends it, "and" sits between two phrases
        for k in (1, 2):
            if k <= len(objects):
                content, style = objects[k - 1]
                end += len(tokenizer.tokenize(object_phrase(content, style))) + (k == 2)
                named = dict(shape=content.shape, colour=content.colour, position=content.position, style=style,
                             size=content.size)
                for f in FACTORS:
                    cols[f"{f}_{k}"].append(values[f].index(named[f]))
            else:
                for f in FACTORS:
                    cols[f"{f}_{k}"].append(len(values[f]))
            cols[f"end_{k}"].append(end if k <= len(objects) else 0)
        cols["background"].append(values["background"].index(first.background))
    ids = tokenizer(cols["caption"], padding="max_length", max_length=p["max_length"], truncation=True)["input_ids"]
    return datasets.Dataset.from_dict({**cols, "input_ids": ids})


def caption_heads(p: dict[str, Any], dim: int):
    """Linear read-outs of what a caption names, for the text-encoder stage (a ``ModuleDict``).

    Two places in the encoder's output are read: each object's **last token** (its position word; the
    causal encoder has seen the whole phrase there) names that object's shape, colour, position, style and
    size (``token_*``); the **pooled** output (the end-of-text token, which has seen everything) names both
    objects' factors (``pooled_*_1``, ``pooled_*_2``, object 2 with an extra "none" class) and the
    background."""
    from torch import nn

    values = factor_values(p)
    heads = nn.ModuleDict({f"token_{f}": nn.Linear(dim, len(values[f])) for f in FACTORS})
    heads.update({f"pooled_{f}_{k}": nn.Linear(dim, len(values[f]) + (k == 2)) for f in FACTORS for k in (1, 2)})
    heads["pooled_background"] = nn.Linear(dim, len(values["background"]))
    return heads


def caption_logits(model, batch) -> dict[str, tuple[Any, Any]]:
    """{head: (logits (N, classes), targets (N,))} of the text stage for ``model`` = ModuleDict(text_encoder,
    heads) on a batch of :func:`caption_dataset`; token heads see object 1's and, where present, object 2's
    last token."""
    import torch

    out = model["text_encoder"](input_ids=torch.as_tensor(batch["input_ids"]))
    hidden, pooled = out.last_hidden_state, out.pooler_output  # (B, L, D), (B, D): the end-of-text token
    rows = torch.arange(hidden.shape[0])
    end_1, end_2 = torch.as_tensor(batch["end_1"]), torch.as_tensor(batch["end_2"])
    two = end_2 > 0
    tokens = torch.cat([hidden[rows, end_1], hidden[rows[two], end_2[two]]])  # (B + B₂, D)
    heads = model["heads"]
    result = {}
    for f in FACTORS:
        target = torch.cat([torch.as_tensor(batch[f"{f}_1"]), torch.as_tensor(batch[f"{f}_2"])[two]])
        result[f"token_{f}"] = (heads[f"token_{f}"](tokens), target)
        for k in (1, 2):
            result[f"pooled_{f}_{k}"] = (heads[f"pooled_{f}_{k}"](pooled), torch.as_tensor(batch[f"{f}_{k}"]))
    result["pooled_background"] = (heads["pooled_background"](pooled), torch.as_tensor(batch["background"]))
    return result


def caption_loss(model, batch):
    """L = Σ_heads CE(head(h), factor): the text stage's loss (see :func:`caption_heads`)."""
    from torch.nn.functional import cross_entropy

    return sum(cross_entropy(logits, target) for logits, target in caption_logits(model, batch).values())


def pretrain_text_encoder(text_encoder, tokenizer, p: dict[str, Any], progress: bool = False):
    """Stage 3: train ``text_encoder`` (with :func:`caption_heads`) to name every factor of scene captions;
    returns (heads, loss history, {head: accuracy on ``n_text_eval`` held-out captions})."""
    # torch and the training loop load here, when a build runs: `swiftlite zoo list` stays light
    import torch

    from .. import train as training

    torch.manual_seed(p["seed"] + 3)
    heads = caption_heads(p, text_encoder.config.hidden_size)
    model = torch.nn.ModuleDict({"text_encoder": text_encoder, "heads": heads})
    data = caption_dataset(p, p["n_text"], p["seed"] + 2, tokenizer).remove_columns("caption").with_format("torch")
    history = training.train(model, data, caption_loss, steps=p["text_steps"], batch_size=p["text_batch"],
                             lr=p["text_lr"], warmup_steps=max(1, p["text_steps"] // 20), seed=p["seed"],
                             progress=progress)
    model.eval()
    test = caption_dataset(p, p["n_text_eval"], p["seed"] + 50_000, tokenizer).remove_columns("caption")
    with torch.no_grad():
        logits = caption_logits(model, test.with_format("torch")[:])
    accuracy = {name: float((out.argmax(-1) == target).float().mean()) for name, (out, target) in logits.items()}
    return heads, history.loss, accuracy


def encode_latents(vae, images, batch_size: int = 256):
    """uint8 images (N, H, W, 3) -> scaled latents (N, C, h, w): posterior mean × ``scaling_factor``."""
    import torch


    with torch.no_grad():
        out = [vae.encode(to_pixel_values(images[i:i + batch_size])).latent_dist.mean
               for i in range(0, len(images), batch_size)]
    return torch.cat(out) * vae.config.scaling_factor


def decode_latents(vae, latents, batch_size: int = 256):
    """Scaled latents (N, C, h, w) -> uint8 images (N, H, W, 3)."""
    import numpy as np
    import torch


    with torch.no_grad():
        return np.concatenate([to_uint8_images(vae.decode(latents[i:i + batch_size] / vae.config.scaling_factor).sample)
                               for i in range(0, len(latents), batch_size)])


def _world(p: dict[str, Any]) -> dict[str, Any]:
    return {k: p[k] for k in ("shapes", "colours", "sizes", "styles", "backgrounds")}


def eval_prompts(p: dict[str, Any], n: int, seed: int) -> tuple[list[str], dict[str, list[str]]]:
    """``n`` one-object prompts with random factors (as the captions word them) and what each asks for."""
    import numpy as np


    rng = np.random.default_rng(seed)
    prompts, wanted = [], {k: [] for k in ("shape", "colour", "position", "style", "size")}
    w = _world(p)
    for _ in range(n):
        content = sample_content(rng, p["image_size"], shapes=w["shapes"], colours=w["colours"], sizes=w["sizes"],
                                 backgrounds=w["backgrounds"])
        style = w["styles"][rng.integers(len(w["styles"]))]
        prompts.append(scene_caption([(content, style)], content.background))
        for k in ("shape", "colour", "position", "size"):
            wanted[k].append(getattr(content, k))
        wanted["style"].append(style)
    return prompts, wanted


def adherence(images, wanted: dict[str, list[str]], judge) -> dict[str, float]:
    """Per-factor match rates of ``images`` against ``wanted`` as named by the judge; ``prompt_match`` =
    shape, colour and position all right; ``all_match`` = also style."""
    import numpy as np

    got = judge.predict(images)
    ok = {k: np.array([g == w for g, w in zip(got[k], wanted[k])]) for k in wanted}
    figures = {f"{k}_match": float(v.mean()) for k, v in ok.items()}
    figures["prompt_match"] = float((ok["shape"] & ok["colour"] & ok["position"]).mean())
    figures["all_match"] = float((ok["shape"] & ok["colour"] & ok["position"] & ok["style"]).mean())
    return figures


def sample_prompts(pipe, prompts: list[str], *, steps: int, guidance_scale: float, seed: int, batch: int = 64):
    """uint8 images (N, H, W, 3) from diffusers' own ``pipe.__call__`` (CFG), seeded per chunk."""
    import numpy as np
    import torch

    out = []
    for i in range(0, len(prompts), batch):
        result = pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance_scale,
                      generator=torch.Generator().manual_seed(seed + i), output_type="np")
        out.append((np.clip(result.images, 0, 1) * 255).round().astype(np.uint8))
    return np.concatenate(out)


def build(out_dir: Path, p: dict[str, Any], progress: bool, part_dirs: dict[str, Path]) -> dict[str, float]:
    # torch, diffusers and the training loop load here, when a build runs: `swiftlite zoo list` stays light
    import numpy as np
    import torch

    from .. import train as training
    from ..diffusion.training import TextToImageLoss
    from .judge import train_scene_judge

    tokenizer = clip_tokenizer(p["max_length"])
    vae, text_encoder, unet, scheduler = make_models(p, tokenizer)
    figures: dict[str, float] = {}
    # 1. the autoencoder
    vae_history = train_vae(vae, p, progress)
    figures["vae_final_train_loss"] = float(np.mean(vae_history[-20:]))
    # 2. pre-encoded latents (and the scaling factor that gives them unit variance, as SD's 0.18215)
    data = scenes_dataset(p["n_train"], image_size=p["image_size"], seed=p["seed"], maps=False,
                          p_second=p["p_second"], **_world(p))
    images = np.asarray(data.with_format("numpy")["image"], dtype=np.uint8)
    vae.register_to_config(scaling_factor=1.0)
    latents = encode_latents(vae, images)
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    latents = latents * vae.config.scaling_factor
    ids = tokenizer(list(data["caption"]), padding="max_length", max_length=p["max_length"], truncation=True)["input_ids"]
    import datasets

    train_set = datasets.Dataset.from_dict({"latents": latents.numpy(), "input_ids": ids}).with_format("torch")
    # 3. the text encoder alone: name every factor of a caption (see the module docstring), then frozen
    _, text_history, text_accuracy = pretrain_text_encoder(text_encoder, tokenizer, p, progress)
    text_encoder.requires_grad_(False).eval()
    figures["text_final_train_loss"] = float(np.mean(text_history[-20:]))
    figures.update({f"text_{name}_accuracy": v for name, v in text_accuracy.items()})
    figures["n_text_eval"] = float(p["n_text_eval"])
    # 4. the U-Net under the frozen text encoder, with caption dropout for classifier-free guidance
    empty = torch.tensor(tokenizer("", padding="max_length", max_length=p["max_length"])["input_ids"])
    loss_fn = TextToImageLoss(scheduler, text_encoder=text_encoder, p_uncond=p["p_uncond"], empty_ids=empty)
    history = training.train(unet, train_set, loss_fn, steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"],
                             warmup_steps=p["warmup_steps"], ema=p["ema"], seed=p["seed"], progress=progress)
    unet.eval()
    figures["final_train_loss"] = float(np.mean(history.loss[-20:]))
    with torch.no_grad():  # weights are shipped in float16: measure exactly what is shipped
        for module in (vae, text_encoder, unet):
            for t in module.parameters():
                t.copy_(t.half().float())
    pipe = assemble(vae, text_encoder, tokenizer, unet, scheduler)
    # 5. quality: judge on real renders, on VAE reconstructions, and on CFG samples
    judge, judge_figures = train_scene_judge(p, progress=progress)
    figures.update(judge_figures)
    test = scenes_dataset(p["n_vae_eval"], image_size=p["image_size"], seed=p["seed"] + 30_000, maps=False,
                          p_second=0.0, **_world(p))
    real = np.asarray(test.with_format("numpy")["image"], dtype=np.uint8)
    recon = decode_latents(vae, encode_latents(vae, real))
    err = (recon.astype(np.float32) - real.astype(np.float32)) / 255.0
    figures["vae_recon_mse"] = float(np.mean(err ** 2))  # on [0, 1] pixels
    figures["vae_recon_psnr_db"] = float(10 * np.log10(1.0 / max(figures["vae_recon_mse"], 1e-12)))
    names = {k: test.features[k].names for k in ("shape", "colour", "position", "style", "size")}
    truth = {k: [names[k][i] for i in test[k]] for k in names}
    for k, v in adherence(recon, truth, judge).items():
        figures[f"vae_recon_{k}"] = v
    figures["n_vae_eval"] = float(len(real))
    prompts, wanted = eval_prompts(p, p["n_eval_prompts"], p["seed"] + 40_000)
    samples = sample_prompts(pipe, prompts, steps=p["sampling_steps"], guidance_scale=p["guidance_scale"],
                             seed=p["seed"])
    figures.update(adherence(samples, wanted, judge))
    figures["n_samples"] = float(len(prompts))
    for scale in p["extra_guidance_scales"]:
        extra = sample_prompts(pipe, prompts, steps=p["sampling_steps"], guidance_scale=scale, seed=p["seed"])
        figures[f"prompt_match_guidance_{scale:g}"] = adherence(extra, wanted, judge)["prompt_match"]
    figures["chance_prompt_match"] = 1.0 / (len(p["shapes"]) * len(p["colours"]) * 9)
    figures["n_parameters_unet"] = float(sum(t.numel() for t in unet.parameters()))
    figures["n_parameters_text_encoder"] = float(sum(t.numel() for t in text_encoder.parameters()))
    figures["n_parameters_vae"] = float(sum(t.numel() for t in vae.parameters()))
    pipe.to(torch.float16).save_pretrained(out_dir)  # float16 files (half the size); load() reads them as float32
    judge.save_pretrained(out_dir / "judge")
    np.save(out_dir / "judge" / "samples.npy", samples[:16])  # a few samples for the README figure
    return figures


# Stable Diffusion v1.5's component configs (unet/, vae/, text_encoder/, scheduler/ config.json of the hub
# release), the fields that set shapes; sd15_shaped_pipeline scales the widths down.
SD15_UNET: dict[str, Any] = dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=(320, 640, 1280, 1280),
                                 layers_per_block=2, down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                 mid_block_type="UNetMidBlock2DCrossAttn",
                                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
                                 attention_head_dim=8, norm_num_groups=32)
SD15_VAE: dict[str, Any] = dict(in_channels=3, out_channels=3, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                latent_channels=4, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
SD15_TEXT: dict[str, Any] = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                                 max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
SD15_SCHEDULER: dict[str, Any] = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                      beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1,
                                      set_alpha_to_one=False, prediction_type="epsilon")


def sd15_shaped_pipeline(*, unet_divisor: int = 10, vae_divisor: int = 8, text_divisor: int = 12, text_layers: int = 2,
                         image_size: int = 64, seed: int = 0):
    """A randomly initialised ``StableDiffusionPipeline`` with SD v1.5's configs, widths divided (U-Net by
    ``unet_divisor``, VAE by ``vae_divisor``, text encoder and cross-attention by ``text_divisor``; group
    norms likewise where a width would not split into 32 groups) and ``text_layers`` of CLIP's 12 layers:
    the same block types, depths, scheduler and VAE scaling as the hub model, nothing downloaded. A GPU user
    swaps it for ``StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")``."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = clip_tokenizer(SD15_TEXT["max_position_embeddings"])
    text_dim = SD15_TEXT["hidden_size"] // text_divisor
    unet_channels = tuple(c // unet_divisor for c in SD15_UNET["block_out_channels"])
    vae_channels = tuple(c // vae_divisor for c in SD15_VAE["block_out_channels"])
    vae_factor = 2 ** (len(vae_channels) - 1)
    unet = UNet2DConditionModel(**{**SD15_UNET, "block_out_channels": unet_channels, "cross_attention_dim": text_dim,
                                   "sample_size": image_size // vae_factor,
                                   "norm_num_groups": min(SD15_UNET["norm_num_groups"], unet_channels[0])})
    vae = AutoencoderKL(**{**SD15_VAE, "block_out_channels": vae_channels, "sample_size": image_size,
                           "norm_num_groups": SD15_VAE["norm_num_groups"] // vae_divisor})
    text_encoder = CLIPTextModel(CLIPTextConfig(
        **{**SD15_TEXT, "hidden_size": text_dim, "intermediate_size": SD15_TEXT["intermediate_size"] // text_divisor,
           "num_attention_heads": 4,  # head width 16 (SD: 12 heads of 64)
           "projection_dim": text_dim, "num_hidden_layers": text_layers},
        vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id))
    return assemble(vae, text_encoder, tokenizer, unet, PNDMScheduler(**SD15_SCHEDULER))


def load(directory: Path):
    """diffusers' ``StableDiffusionPipeline.from_pretrained(directory)`` in float32 (progress bar off)."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(directory, safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def load_judge(directory: Path):
    """The :class:`~swiftlite.zoo.judge.SceneJudge` saved with ``sd-tiny`` (to score a tuned model's samples)."""
    from .judge import SceneJudge  # the judge loads torch: kept out of `import swiftlite.zoo`

    return SceneJudge.from_pretrained(Path(directory) / "judge")


RECIPE = register(Recipe(
    name="sd-tiny", version=3, full=FULL, quick=QUICK, build=build, load=load,
    description="StableDiffusionPipeline: AutoencoderKL (32 px -> 4x8x8) + CLIPTextModel + SD-1.5-layout U-Net",
    targets={"prompt_match": ">= 0.50 (full build, CFG; shape, colour and position all right)"},
))
