"""Sampling a (tuned) pixel-space U-Net with classifier-free guidance and any diffusers scheduler.

Classifier-free guidance (Ho & Salimans, arXiv:2207.12598) runs the same network on the empty
prompt ∅ and on the caption c, and extrapolates from the first towards the second::

    f̂(x_t, c) = f_θ(x_t, ∅) + w · (f_θ(x_t, c) − f_θ(x_t, ∅))          (w = guidance_scale)

where f is whatever the network predicts (ε, v or x₀: the scheduler's ``prediction_type``, the
mixing is linear in all three). The two halves go through the U-Net as one batch of 2B rows
``[unconditional; conditional]``. w = 1 skips the unconditional half.

The denoising steps come from a diffusers scheduler built with ``from_config`` from the training
scheduler's config, so DDPM (ancestral, Ho et al. 2020) and DDIM (deterministic with η = 0, Song et
al. arXiv:2010.02502) — or any other diffusers scheduler class — are swappable; see
:func:`make_scheduler`. Everything random (the starting noise, DDPM's per-step noise) is drawn
from one ``torch.Generator`` seeded with ``seed``: the same seed gives the same images.

Conditions (the Controllable SC-Tuner, a ControlNet, ...). The U-Net's call signature stays
diffusers' own; a condition travels *beside* it::

    with condition_context(condition_for_the_batch):
        for t in timesteps: ... unet(x_t, t, encoder_hidden_states=ctx) ...

``condition`` is anything the caller's tuner understands — a tensor (B, C, H, W), a dict of
them (several conditions), or a list — with B rows in prompt order. Under guidance it is
repeated to match the 2B-row U-Net batch (tensors are concatenated ``[c; c]`` on dim 0, dicts and
lists element-wise; other values are passed as they are), so the control acts on both halves, as
in ControlNet. ``condition_context(condition)`` must return a context manager: on enter it hands
the condition to the model (e.g. stores it where the tuner's forward reads it), on exit it clears
it. The same contract is used by :class:`swiftlite.diffusion.training.TextToImageLoss`.

Latent pipelines (diffusers' ``StableDiffusionPipeline``, ``zoo.load("sd-tiny")``): the loop above runs on
latents of the U-Net's ``sample_size`` and ``out_channels``, and the result is decoded,
x̂ = D(ẑ₀ / s) with the pipeline's VAE (s = ``vae.config.scaling_factor``).
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..data.shapes import to_uint8_images

__all__ = ["make_scheduler", "sample", "sample_grid", "unet_output", "repeat_condition", "prompt_embeddings"]

SCHEDULERS = {"ddim": "DDIMScheduler", "ddpm": "DDPMScheduler"}


def unet_output(out: Any) -> torch.Tensor:
    """The predicted tensor of a U-Net call, whatever wrapper returned it (a diffusers output with
    ``.sample``, a tuple, or a tensor)."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"the U-Net returned {type(out).__name__}; expected a tensor, a tuple or an object "
                    "with .sample")


def make_scheduler(train_scheduler: Any, kind: Any = "ddim", **overrides: Any) -> Any:
    """A sampling scheduler built from ``train_scheduler.config`` (same betas, same prediction_type).

    ``kind``: ``"ddim"``, ``"ddpm"``, or any diffusers scheduler class (``EulerDiscreteScheduler``,
    ...). ``timestep_spacing`` defaults to ``"trailing"`` (the last step starts at t = T−1, pure
    noise; Lin et al., arXiv:2305.08891); ``overrides`` replace any config value.
    """
    import diffusers

    if isinstance(kind, str):
        if kind.lower() not in SCHEDULERS:
            raise ValueError(f"scheduler={kind!r}: expected one of {sorted(SCHEDULERS)} or a diffusers scheduler "
                             "class such as diffusers.EulerDiscreteScheduler")
        kind = getattr(diffusers, SCHEDULERS[kind.lower()])
    if not hasattr(kind, "from_config"):
        raise TypeError(f"scheduler={kind!r}: expected 'ddim', 'ddpm' or a diffusers scheduler class "
                        "(one with from_config)")
    return kind.from_config(train_scheduler.config, **{"timestep_spacing": "trailing", **overrides})


def repeat_condition(condition: Any, times: int) -> Any:
    """``condition`` for a batch ``times`` as large: tensors are concatenated on dim 0, dicts and lists
    element-wise, anything else (a scale, a name) is returned as it is."""
    if isinstance(condition, torch.Tensor):
        return torch.cat([condition] * times)
    if isinstance(condition, Mapping):
        return {k: repeat_condition(v, times) for k, v in condition.items()}
    if isinstance(condition, (list, tuple)):
        return type(condition)(repeat_condition(v, times) for v in condition)
    return condition


def prompt_embeddings(pipe: Any, prompts: Sequence[str]) -> torch.Tensor:
    """(B, L, D) last hidden state of ``pipe``'s text encoder for ``prompts`` padded to the tokenizer's
    ``model_max_length`` (what diffusers' ``StableDiffusionPipeline.encode_prompt`` computes without
    ``clip_skip``); a pipeline with its own one-argument ``encode_prompt`` (``unet-tiny``) uses that."""
    if getattr(pipe, "vae", None) is None:
        return pipe.encode_prompt(list(prompts))
    device = next(pipe.text_encoder.parameters()).device
    ids = pipe.tokenizer(list(prompts), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")["input_ids"].to(device)
    return pipe.text_encoder(ids)[0]


@torch.no_grad()
def sample(pipe: Any, prompts: Sequence[str] | str, *, unet: nn.Module | None = None, scheduler: Any = "ddim",
           num_inference_steps: int = 25, guidance_scale: float = 1.5, seed: int = 0, negative_prompt: str = "",
           condition: Any = None, condition_context: Callable[[Any], ContextManager] | None = None,
           extra_inputs: torch.Tensor | None = None, unet_kwargs: Mapping[str, Any] | None = None,
           output_type: str = "np", progress: bool = False) -> np.ndarray | torch.Tensor:
    """One image per prompt from ``pipe``'s text encoder, tokenizer and training scheduler.

    ``pipe``: a :class:`swiftlite.zoo.pipeline.TinyDiffusionPipeline` (``zoo.load("unet-tiny")``) or a
    diffusers ``StableDiffusionPipeline`` (``zoo.load("sd-tiny")``, sampled in latent space and decoded);
    ``unet`` replaces ``pipe.unet`` (e.g. the ``SwiftModel`` being tuned). ``scheduler``: see
    :func:`make_scheduler` (``"ddim"``, ``"ddpm"``, a class, or a ready scheduler instance).
    ``negative_prompt`` is the unconditional branch's text (the empty prompt by default).
    ``condition`` / ``condition_context``: see the module docstring. ``extra_inputs`` (B, C', H, W)
    (e.g. a source image or a mask, as StyleBooth / LAR-Gen use) are concatenated to x_t on channels;
    ``unet_kwargs`` are passed to every U-Net call.

    Returns uint8 images (B, H, W, 3) or, with ``output_type="pt"``, floats (B, C, H, W) in [-1, 1].
    """
    if output_type not in ("np", "pt"):
        raise ValueError(f"output_type={output_type!r}; expected 'np' or 'pt'")
    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps={num_inference_steps}: must be at least 1")
    if condition is not None and condition_context is None:
        raise ValueError("sample(condition=...): also pass condition_context, the context manager factory that hands "
                         "the condition to your model (see swiftlite.diffusion.sampling's docstring)")
    unet = pipe.unet if unet is None else unet
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    vae = getattr(pipe, "vae", None)
    b, size = len(prompts), pipe.image_size if vae is None else pipe.unet.config.sample_size
    device = next(unet.parameters()).device
    sched = make_scheduler(pipe.scheduler, scheduler) if isinstance(scheduler, (str, type)) else scheduler
    sched.set_timesteps(num_inference_steps)
    use_cfg = guidance_scale != 1.0
    ctx = prompt_embeddings(pipe, prompts)  # (B, L, D)
    if use_cfg:
        ctx = torch.cat([prompt_embeddings(pipe, [negative_prompt] * b), ctx])  # (2B, L, D): [∅; c]
    ctx = ctx.to(device)
    generator = torch.Generator().manual_seed(seed)
    channels = (getattr(getattr(unet, "config", None), "out_channels", None)  # the U-Net's, else its pipeline's
                or getattr(getattr(pipe.unet, "config", None), "out_channels", 3))
    x = torch.randn(b, channels, size, size, generator=generator) * sched.init_noise_sigma  # x_T (B, C, H, W)
    x = x.to(device)
    if condition is None:
        context = contextlib.nullcontext()
    else:
        context = condition_context(repeat_condition(condition, 2) if use_cfg else condition)
    extra = None if extra_inputs is None else extra_inputs.to(device)
    extra = torch.cat([extra, extra]) if extra is not None and use_cfg else extra
    kwargs = dict(unet_kwargs or {})
    was_training = unet.training
    unet.eval()
    steps = sched.timesteps
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="sampling", leave=False)
    try:
        with context:
            for t in steps:
                x_in = sched.scale_model_input(torch.cat([x, x]) if use_cfg else x, t)  # (2B or B, C, H, W)
                if extra is not None:
                    x_in = torch.cat([x_in, extra], dim=1)  # (2B or B, C + C', H, W)
                pred = unet_output(unet(x_in, t.to(device), encoder_hidden_states=ctx, **kwargs))
                if use_cfg:
                    uncond, cond = pred.chunk(2)
                    # f̂ = f(∅) + w · (f(c) − f(∅))
                    pred = uncond + guidance_scale * (cond - uncond)
                x = sched.step(pred, t, x, generator=generator).prev_sample
    finally:
        unet.train(was_training)
    if vae is not None:
        # x̂ = D(ẑ₀ / s)
        x = vae.decode(x.to(next(vae.parameters()).device) / vae.config.scaling_factor).sample
    x = x.clamp(-1, 1)
    return x if output_type == "pt" else to_uint8_images(x)


def sample_grid(images: np.ndarray | Mapping[str, np.ndarray], *, col_titles: Sequence[str] | None = None,
                ncols: int | None = None, title: str | None = None, cell_inches: float = 0.9):
    """A matplotlib figure of uint8 images (N, H, W, 3), or of ``{row label: images}`` (one row each).

    ``col_titles`` label the columns (e.g. the prompts); ``ncols`` wraps a flat array (default: all
    in one row, at most 8 per row).
    """
    import textwrap

    import matplotlib.pyplot as plt

    if isinstance(images, Mapping):
        rows = {str(k): np.asarray(v) for k, v in images.items()}
        ncols = max(len(v) for v in rows.values())
    else:
        flat = np.asarray(images)
        if flat.ndim != 4:
            raise ValueError(f"sample_grid: expected images (N, H, W, 3), got shape {flat.shape}")
        ncols = ncols or min(len(flat), 8)
        rows = {f"row {r}": flat[i:i + ncols] for r, i in enumerate(range(0, len(flat), ncols))}
    labelled = isinstance(images, Mapping)
    nrows = len(rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell_inches * ncols + (1.2 if labelled else 0.2),
                                                    cell_inches * nrows + (0.5 if title else 0.1)),
                             squeeze=False)
    for r, (label, row) in enumerate(rows.items()):
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(row):
                ax.imshow(row[c], interpolation="nearest")
            if c == 0 and labelled:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
            if r == 0 and col_titles is not None and c < len(col_titles):
                # wrapped to the cell's width (about 16 characters of 7-pt text per inch): no title over its neighbour's
                ax.set_title(textwrap.fill(str(col_titles[c]), width=max(8, int(16 * cell_inches))), fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
