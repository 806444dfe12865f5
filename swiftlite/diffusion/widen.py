"""Channel-expanded U-Nets for editing and inpainting, zero-initialised so they start as the pretrained model.

InstructPix2Pix (Brooks, Holynski & Efros, "InstructPix2Pix: Learning to Follow Image Editing
Instructions", arXiv:2211.09800) feeds the U-Net the noisy latent and the source image's latent side by
side; SD's inpainting model feeds the noisy latent, the mask and the masked image's latent::

    editing:     u = [z_t ; E(x_src)]                       4 + 4 = 8 input channels
    inpainting:  u = [z_t ; m↓ ; E(x ⊙ (1 − m))]            4 + 1 + 4 = 9 input channels

Only the first convolution changes. Its new input weights are zero (InstructPix2Pix §3.2: "weights that
operate on the newly added input channels are initialized to zero"), so at init::

    conv_in'(u) = [W | 0] * u + b = W * z_t + b = conv_in(z_t)

and the widened U-Net predicts exactly what the pretrained one does; fine-tuning then learns to read the
extra channels. :func:`instruct_pix2pix_pipeline` and :func:`inpaint_pipeline` wrap the widened U-Net in
diffusers' own ``StableDiffusionInstructPix2PixPipeline`` / ``StableDiffusionInpaintPipeline``, sharing the
VAE, text encoder, tokenizer and scheduler of a ``StableDiffusionPipeline`` (``zoo.load("sd-tiny")``).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

__all__ = ["widen_conv_in", "instruct_pix2pix_pipeline", "inpaint_pipeline", "EDIT_CHANNELS", "INPAINT_CHANNELS"]

EDIT_CHANNELS = 8  # noisy latent ⊕ source latent
INPAINT_CHANNELS = 9  # noisy latent ⊕ mask ⊕ masked-image latent


def widen_conv_in(unet: nn.Module, in_channels: int, *, copy_model: bool = True) -> nn.Module:
    """A U-Net whose ``conv_in`` reads ``in_channels`` channels: the old weights on the first ones, zeros on
    the new ones (so its output is unchanged at init). ``copy_model=False`` widens ``unet`` in place."""
    old = unet.conv_in
    if not isinstance(old, nn.Conv2d):
        raise TypeError(f"widen_conv_in: expected a diffusers U-Net whose conv_in is an nn.Conv2d, got "
                        f"{type(old).__name__}; widen the base U-Net before wrapping it with a tuner")
    if in_channels <= old.in_channels:
        raise ValueError(f"widen_conv_in: in_channels={in_channels} must exceed the U-Net's {old.in_channels} "
                         f"(e.g. {EDIT_CHANNELS} for editing, {INPAINT_CHANNELS} for inpainting)")
    unet = copy.deepcopy(unet) if copy_model else unet
    new = nn.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding,
                    bias=old.bias is not None).to(old.weight.device, old.weight.dtype)
    with torch.no_grad():
        new.weight.zero_()
        # W' = [W | 0]
        new.weight[:, :old.in_channels] = old.weight
        if old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)  # saved config matches the weights
    return unet


def _parts(pipe: Any, unet: nn.Module) -> dict[str, Any]:
    return dict(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=unet,
                scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def instruct_pix2pix_pipeline(pipe: Any, unet: nn.Module | None = None) -> Any:
    """diffusers' ``StableDiffusionInstructPix2PixPipeline`` over ``pipe``'s parts with an 8-channel U-Net
    (``unet`` if given, else ``pipe.unet`` widened)."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    unet = widen_conv_in(pipe.unet, EDIT_CHANNELS) if unet is None else unet
    edit = StableDiffusionInstructPix2PixPipeline(**_parts(pipe, unet))
    edit.set_progress_bar_config(disable=True)
    return edit


def inpaint_pipeline(pipe: Any, unet: nn.Module | None = None) -> Any:
    """diffusers' ``StableDiffusionInpaintPipeline`` over ``pipe``'s parts with a 9-channel U-Net
    (``unet`` if given, else ``pipe.unet`` widened)."""
    from diffusers import StableDiffusionInpaintPipeline

    unet = widen_conv_in(pipe.unet, INPAINT_CHANNELS) if unet is None else unet
    inpaint = StableDiffusionInpaintPipeline(**_parts(pipe, unet))
    inpaint.set_progress_bar_config(disable=True)
    return inpaint
