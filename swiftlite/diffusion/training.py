"""Text-to-image fine-tuning of a (Swift-tuned) U-Net on the shared trainer.

One training step of a diffusion model (DDPM, Ho et al., arXiv:2006.11239), with x₀ an image in
[-1, 1], c its caption's token embeddings and ᾱ_t the scheduler's cumulative signal fraction::

    t ~ U{0, …, T−1},  ε ~ N(0, I)
    x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε                                   (scheduler.add_noise)
    target = ε                          if prediction_type == "epsilon"
           = √ᾱ_t ε − √(1−ᾱ_t) x₀       if prediction_type == "v_prediction"   (arXiv:2202.00512)
           = x₀                         if prediction_type == "sample"
    L = ‖f_θ(x_t, t, c) − target‖²

The target is read from ``scheduler.config.prediction_type``, so the loss always matches the
scheduler that samples afterwards. With probability ``p_uncond`` the caption is replaced by the
empty prompt, so the tuned network keeps the unconditional branch that classifier-free guidance
needs.

:class:`TextToImageLoss` is a plain ``loss_fn(model, batch)`` for :func:`swiftlite.train.train`;
``model`` is whatever is being trained: a U-Net wrapped by ``Swift.prepare_model`` (SC-Tuner,
LoRA, ...), a U-Net with all weights trainable (full fine-tuning), or a ``ModuleDict`` with
``"unet"`` and ``"text_encoder"`` (how ``swiftlite.zoo`` pretrains ``unet-tiny``, both trained).
A frozen text encoder passed to the loss runs under ``no_grad``.

Conditions (masks, edge maps, ...) for controllable tuners: ``condition_columns`` names dataset
columns; the loss turns them into float maps (B, 1, H, W) in [0, 1] and hands them to the
caller's ``condition_context(condition)`` context manager, entered around the U-Net call (the
same mechanism as :func:`swiftlite.diffusion.sampling.sample`). One column gives one tensor,
several give a ``{column: tensor}`` dict.

Latent diffusion (``sd-tiny``, any ``StableDiffusionPipeline``): with ``vae=`` the images are encoded
first, x₀ = s · μ(image), the posterior mean (s = ``vae.config.scaling_factor``; SD's own scripts draw
z ~ q(z | image), whose σ is tiny in SD's VAE; sd-tiny's VAE is trained on μ), and everything above runs on
x₀ in latent space; a batch with a ``latents`` column (pre-encoded, already scaled) skips the VAE.
:meth:`TextToImageLoss.for_pipeline` reads scheduler, text encoder and VAE from a pipeline.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, ContextManager, Sequence

import torch
from torch import nn

from ..data.shapes import shapes_dataset, to_pixel_values
from ..core.modules import innermost_base_layer
from ..tuners.scetuning import SCETuningConfig, unet_skip_widths
from ..tuners.scetuning_condition import level_widths
from .sampling import unet_output

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")

__all__ = ["PREDICTION_TYPES", "diffusion_target", "text_to_image_dataset", "TextToImageLoss", "as_condition",
           "sc_tuner_config", "UP_RESNETS"]

UP_RESNETS = r"up_blocks\.\d+\.resnets\.\d+"  # the decoder resnets that read the skip connections


def diffusion_target(scheduler: Any, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """What the network must predict at (x₀, ε, t), by ``scheduler.config.prediction_type``."""
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return noise  # ε
    if kind == "v_prediction":
        return scheduler.get_velocity(x0, noise, t)  # v = √ᾱ_t ε − √(1−ᾱ_t) x₀
    if kind == "sample":
        return x0  # x₀
    raise ValueError(f"scheduler.config.prediction_type={kind!r} is not supported; expected one of "
                     f"{list(PREDICTION_TYPES)} (set it with Scheduler.from_config(config, prediction_type=...))")


def as_condition(maps: Any) -> torch.Tensor:
    """(B, H, W) maps (uint8 {0, 1} or float) -> float tensor (B, 1, H, W); (B, C, H, W) stays as is."""
    x = torch.as_tensor(maps).float()
    if x.dim() == 3:
        x = x[:, None]  # (B, H, W) -> (B, 1, H, W)
    if x.dim() != 4:
        raise ValueError(f"a condition must be (B, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    return x


def text_to_image_dataset(tokenizer: Any, n: int, *, style: str = "plain", image_size: int = 16, seed: int = 0,
                          caption: str = "caption", condition_columns: Sequence[str] = (),
                          keep_columns: Sequence[str] = (), **world: Any):
    """``n`` shapes-world images in ``style`` with their tokenised captions, ready for :func:`train`.

    ``caption`` picks the text column (``"caption"``: "a red circle at the top left", the prompts
    ``unet-tiny`` was trained on; ``"long_caption"``: every factor, style word included).
    ``world`` goes to :func:`swiftlite.data.shapes.shapes_dataset` (``shapes``, ``colours``,
    ``sizes``, ``backgrounds``, ...). Columns (torch format): ``image`` (B, H, W, 3) uint8,
    ``input_ids`` (B, L) padded to ``tokenizer.model_max_length``, then ``condition_columns``
    (``mask``, ``edges``, ``depth``, ``distance``) and ``keep_columns`` (e.g. ``shape``, ``colour``).
    """
    if caption not in ("caption", "long_caption"):
        raise ValueError(f"caption={caption!r}; expected 'caption' or 'long_caption'")
    maps = {"mask", "edges", "depth", "distance"}
    unknown = [c for c in condition_columns if c not in maps]
    if unknown:
        raise ValueError(f"condition_columns={list(condition_columns)!r}: {unknown} are not shapes-world maps; "
                         f"choose from {sorted(maps)}")
    data = shapes_dataset(n, image_size=image_size, seed=seed, styles=(style,), maps=bool(condition_columns),
                          **world)
    ids = tokenizer(list(data[caption]), padding="max_length", truncation=True,
                    max_length=tokenizer.model_max_length)["input_ids"]
    columns = ["image", *condition_columns, *keep_columns]
    return data.select_columns(columns).add_column("input_ids", ids).with_format("torch")


class TextToImageLoss:
    """``loss_fn(model, batch)``: the denoising loss of the module docstring for :func:`swiftlite.train.train`.

    ``scheduler``: the training scheduler (its ``prediction_type`` and ``num_train_timesteps``).
    ``text_encoder``: a frozen text encoder, used when ``model`` is a bare U-Net (not needed when
    ``model`` is a ``ModuleDict`` holding ``"text_encoder"``). ``empty_ids``: the token ids of the
    empty prompt (``tokenizer("", padding="max_length")``), required when ``p_uncond > 0``.
    ``condition_context`` / ``condition_columns``: see the module docstring.
    """

    def __init__(self, scheduler: Any, *, text_encoder: nn.Module | None = None, p_uncond: float = 0.0,
                 empty_ids: torch.Tensor | Sequence[int] | None = None,
                 condition_context: Callable[[Any], ContextManager] | None = None,
                 condition_columns: Sequence[str] = (), vae: nn.Module | None = None) -> None:
        if scheduler.config.prediction_type not in PREDICTION_TYPES:
            diffusion_target(scheduler, torch.zeros(1), torch.zeros(1), torch.zeros(1, dtype=torch.long))  # raises
        if not 0.0 <= p_uncond < 1.0:
            raise ValueError(f"TextToImageLoss.p_uncond: must be in [0, 1), got {p_uncond}")
        if p_uncond > 0 and empty_ids is None:
            raise ValueError("TextToImageLoss.empty_ids: required when p_uncond > 0 (the ids of the empty prompt, "
                             "tokenizer('', padding='max_length', max_length=tokenizer.model_max_length)['input_ids'])")
        if bool(condition_columns) != (condition_context is not None):
            raise ValueError("TextToImageLoss: give condition_columns and condition_context together (the columns "
                             "say what the condition is, the context manager hands it to the model)")
        self.scheduler, self.text_encoder, self.p_uncond = scheduler, text_encoder, p_uncond
        self.empty_ids = None if empty_ids is None else torch.as_tensor(empty_ids)
        self.condition_context, self.condition_columns = condition_context, list(condition_columns)
        self.vae = vae

    @classmethod
    def for_pipeline(cls, pipe: Any, **kwargs: Any) -> "TextToImageLoss":
        """The loss for fine-tuning ``pipe``'s U-Net: its scheduler, its (frozen) text encoder, and its VAE
        when it has one (a ``StableDiffusionPipeline``); ``kwargs`` as in the constructor."""
        kwargs.setdefault("text_encoder", pipe.text_encoder)
        kwargs.setdefault("vae", getattr(pipe, "vae", None))
        return cls(pipe.scheduler, **kwargs)

    def clean_sample(self, batch: Any) -> torch.Tensor:
        """x₀: the batch's ``latents``, else its images in [-1, 1], encoded by the VAE when there is one."""
        if "latents" in batch:
            return torch.as_tensor(batch["latents"]).float()  # pre-encoded, already scaled
        x = to_pixel_values(batch["image"])  # (B, 3, H, W) in [-1, 1]
        if self.vae is None:
            return x
        with torch.no_grad():
            z = self.vae.encode(x.to(next(self.vae.parameters()).device)).latent_dist.mean  # μ(x)
        # x₀ = s · z
        return z * self.vae.config.scaling_factor

    def encode(self, model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, L, D): the model's own text encoder (trained) or the frozen one given."""
        if isinstance(model, nn.ModuleDict) and "text_encoder" in model:
            return model["text_encoder"](input_ids=ids).last_hidden_state
        if self.text_encoder is None:
            raise ValueError("TextToImageLoss.text_encoder: the model is a bare U-Net, so pass the (frozen) text "
                             "encoder, e.g. TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder)")
        with torch.no_grad():
            return self.text_encoder(input_ids=ids.to(next(self.text_encoder.parameters()).device)).last_hidden_state

    def condition(self, batch: Any) -> Any:
        maps = {c: as_condition(batch[c]) for c in self.condition_columns}
        return next(iter(maps.values())) if len(maps) == 1 else maps

    def __call__(self, model: nn.Module, batch: Any) -> torch.Tensor:
        unet = model["unet"] if isinstance(model, nn.ModuleDict) else model
        x0 = self.clean_sample(batch)  # (B, C, H, W): pixels in [-1, 1] or scaled latents
        ids = batch["input_ids"].clone()  # (B, L)
        if self.p_uncond > 0:  # classifier-free guidance: also learn p(x | ∅)
            drop = torch.rand(ids.shape[0]) < self.p_uncond
            ids[drop] = self.empty_ids.to(ids.dtype)
        ctx = self.encode(model, ids)  # (B, L, D)
        noise = torch.randn_like(x0)  # ε
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],)).to(x0.device)  # t ~ U{0..T-1}
        x_t = self.scheduler.add_noise(x0, noise, t)  # √ᾱ_t x₀ + √(1−ᾱ_t) ε
        target = diffusion_target(self.scheduler, x0, noise, t)
        context = self.condition_context(self.condition(batch)) if self.condition_context else contextlib.nullcontext()
        with context:
            pred = unet_output(unet(x_t, t, encoder_hidden_states=ctx))
        return nn.functional.mse_loss(pred, target)


def sc_tuner_config(unet: nn.Module, down_ratio: float = 1.0, **fields: Any):
    """An ``SCETuningConfig`` with one SC-Tuner per skip connection of a diffusers U-Net (decoder mode),
    ``dims`` read from the model (:func:`swiftlite.tuners.scetuning.unet_skip_widths`)."""
    widths = unet_skip_widths(unet)
    if not widths:
        raise ValueError(f"sc_tuner_config: {type(unet).__name__} has no diffusers up-block resnets that read skips")
    return SCETuningConfig(dims=list(widths.values()), target_modules=UP_RESNETS, down_ratio=down_ratio, **fields)


def unet_skips(unet: nn.Module) -> list[dict[str, Any]]:
    """Every skip connection of a diffusers U-Net, in encoder order (highest resolution first): the module whose
    output is pushed (``producer``), the decoder resnet that concatenates it (``consumer``), its ``channels`` and its
    ``level`` (how often it was downsampled; its side is ``sample_size / 2**level``).

    The down path pushes conv_in's output, each down block's per-layer output (its attention's when it has one,
    else its resnet's) and each downsampler's output; the up blocks pop them last-first, one per resnet."""
    consumers = unet_skip_widths(unet)
    if not consumers or not hasattr(unet, "down_blocks"):
        raise ValueError(f"unet_skips: {type(unet).__name__} is not a diffusers U-Net with down and up blocks")
    producers, level = [("conv_in", unet.conv_in.out_channels, 0)], 0
    for b, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        for i, resnet in enumerate(block.resnets):
            name = f"down_blocks.{b}.attentions.{i}" if attentions is not None else f"down_blocks.{b}.resnets.{i}"
            producers.append((name, innermost_base_layer(resnet).out_channels, level))
        if getattr(block, "downsamplers", None) is not None:
            level += 1
            producers.append((f"down_blocks.{b}.downsamplers.0", block.downsamplers[0].out_channels, level))
    if len(producers) != len(consumers):
        raise ValueError(f"unet_skips: the down path pushes {len(producers)} features but the up blocks read "
                         f"{len(consumers)}; this U-Net's layout is not diffusers' UNet2DConditionModel's")
    skips = []
    for (producer, channels, lvl), (consumer, width) in zip(producers, reversed(list(consumers.items()))):
        if channels != width:  # the two readings of the model must agree
            raise ValueError(f"unet_skips: {producer} gives {channels} channels but {consumer} reads {width}")
        skips.append({"producer": producer, "consumer": consumer, "channels": channels, "level": lvl})
    return skips


def skip_flow(unet: nn.Module, config: SCETuningConfig | None = None, title: str = ""):
    """The data flow of SCEdit on a diffusers U-Net, drawn from the model: encoder features (left) → skip → tuner →
    concatenation ‖ → decoder resnet (right), the mid block below. With a config that has ``condition_channels``
    (the CSC-Tuner), the condition encoder's levels sit between encoder and tuners and send one hint c_j to each
    tuner. Returns the matplotlib figure (:class:`swiftlite.viz.FlowDiagram`)."""
    from ..viz.flow import FlowDiagram  # only when a figure is drawn: viz is not needed to train

    config = config or sc_tuner_config(unet)
    skips, side, row = unet_skips(unet), unet.config.sample_size, 1.35
    condition = config.condition_channels is not None
    x_tuner, x_cat, x_dec = (7.0, 9.2, 11.6) if condition else (4.0, 6.2, 8.6)
    fd = FlowDiagram(title)
    fd.box("in", f"noisy image x_t\n{unet.conv_in.in_channels} ch · {side}×{side}", at=(0, 1.3))
    for k, s in enumerate(skips):
        y, res = -row * k, side // 2 ** s["level"]
        fd.box(f"e{k}", f"{s['producer']}\n{s['channels']} ch · {res}×{res}", at=(0, y), kind="frozen", width=3.0)
        hidden = max(1, int(s["channels"] * config.down_ratio))
        label = (f"CSC-Tuner\n{s['channels']}→{hidden}→{s['channels']}" if condition
                 else f"SC-Tuner\n{s['channels']}→{hidden}→{s['channels']}")
        fd.box(f"t{k}", label, at=(x_tuner, y), kind="tuner", width=1.9)
        fd.node(f"c{k}", "‖", at=(x_cat, y))
        fd.box(f"d{k}", s["consumer"], at=(x_dec, y), kind="frozen", width=3.0)
        fd.arrow("in" if k == 0 else f"e{k - 1}", f"e{k}")
        fd.arrow(f"e{k}", f"t{k}", label="skip $x_j$" if k == 0 else "")
        fd.arrow(f"t{k}", f"c{k}", label="$O_j$" if k == 0 else "")
        fd.arrow(f"c{k}", f"d{k}")
    n = len(skips)
    fd.box("mid", f"mid_block\n{skips[-1]['channels']} ch · {side // 2 ** skips[-1]['level']}×"
                  f"{side // 2 ** skips[-1]['level']}", at=(x_dec / 2, -row * n), kind="frozen")
    fd.box("out", "conv_out → prediction", at=(x_dec, 1.3), kind="frozen")
    fd.arrow(f"e{n - 1}", "mid")
    fd.arrow("mid", f"c{n - 1}", label="hidden")
    for k in range(n - 1, 0, -1):
        fd.arrow(f"d{k}", f"c{k - 1}")
    fd.arrow("d0", "out")
    if condition:
        n_levels = max(s["level"] for s in skips) + 1
        widths = level_widths(config.condition_dims, n_levels)
        fd.box("cond", f"condition map\n{config.condition_channels} ch · {side}×{side}", at=(4.2, 1.3),
               kind="condition")
        for lvl in range(n_levels):
            rows = [k for k, s in enumerate(skips) if s["level"] == lvl]
            res, d_in = side // 2 ** lvl, config.condition_channels if lvl == 0 else widths[lvl - 1]
            fd.box(f"l{lvl}", f"level {lvl}: {d_in}→{widths[lvl]}\n3×3 convs · {res}×{res}",
                   at=(4.2, -row * (sum(rows) / len(rows) if rows else lvl)), kind="condition", width=2.4)
            fd.arrow("cond" if lvl == 0 else f"l{lvl - 1}", f"l{lvl}")
            for k in rows:
                fd.arrow(f"l{lvl}", f"t{k}", label="$Z_j$ (1×1, zero init)" if k == rows[0] else "")
    return fd.draw()
