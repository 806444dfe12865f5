"""ControlNet baseline (Zhang, Rao & Agrawala, "Adding Conditional Control to Text-to-Image Diffusion Models",
ICCV 2023, arXiv:2302.05543) for the Controllable SC-Tuner comparison, built with diffusers' own classes.

A trainable copy of the U-Net's encoder (conv_in, down blocks, mid block) reads x_t plus an embedding of
the condition c; zero-initialised 1×1 convs turn each of its features into a residual r_j that is added
to the frozen U-Net's matching skip (and r_mid to the mid block's output)::

    r_1..r_n, r_mid = ControlNet(x_t, t, text, c)                        (every r starts at 0)
    skip_j' = skip_j + s · r_j,   mid' = mid + s · r_mid                 (s = conditioning_scale)

`ControlNetModel.from_unet(unet)` copies the encoder's weights; the U-Net takes the residuals through its
`down_block_additional_residuals` / `mid_block_additional_residual` arguments. Only the ControlNet trains.

    controlled = ControlNetUNet(pipe.unet, conditioning_channels=1)
    with controlled.conditioned(masks):            # (B, 1, H, W) or (B, H, W), at the sample's resolution
        images = sample(pipe, prompts, unet=controlled)

The same contract as the CSC-Tuner (`scetuning_condition`): the condition travels beside diffusers' call
signature, and a condition whose batch divides the U-Net's is tiled (classifier-free guidance's 2B rows).
`swiftlite.diffusion.sample(..., condition=c, condition_context=controlled.conditioned)` works as well.

Differences from the paper: the condition embedding of SD's ControlNet (16, 32, 96, 256 channels, three
stride-2 convs: 512 px -> the 64×64 latent) is one conv stage here (`conditioning_embedding_out_channels=
(16,)`), because `unet-tiny` denoises 16×16 pixels: the condition already has the sample's resolution.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
from torch import nn

__all__ = ["ControlNetUNet", "trainable_parameter_count"]


class ControlNetUNet(nn.Module):
    """A frozen diffusers `UNet2DConditionModel` (`unet`) and a trainable `ControlNetModel` copy of its encoder
    (`controlnet`). Called like the U-Net; without a condition it is exactly the U-Net."""

    def __init__(self, unet: nn.Module, *, conditioning_channels: int = 1,
                 conditioning_embedding_out_channels: Sequence[int] = (16,), conditioning_scale: float = 1.0) -> None:
        from diffusers import ControlNetModel

        super().__init__()
        self.unet = unet.requires_grad_(False)
        self.controlnet = ControlNetModel.from_unet(
            unet, conditioning_channels=conditioning_channels,
            conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels))
        self.controlnet.to(next(unet.parameters()).device)
        self.conditioning_channels = conditioning_channels
        self.conditioning_scale = conditioning_scale  # s
        self.condition: torch.Tensor | None = None

    @property
    def config(self) -> Any:
        return self.unet.config

    def set_condition(self, condition: torch.Tensor | None) -> None:
        """The condition map (B, k, H, W) or (B, H, W) used by every following forward; None: no control."""
        if condition is not None:
            condition = torch.as_tensor(condition).float()
            condition = condition[:, None] if condition.dim() == 3 else condition  # (B, H, W) -> (B, 1, H, W)
            if condition.dim() != 4 or condition.shape[1] != self.conditioning_channels:
                raise ValueError(f"ControlNetUNet.set_condition: expected a (B, {self.conditioning_channels}, H, W) map "
                                 f"(conditioning_channels={self.conditioning_channels}), got shape {tuple(condition.shape)}")
        self.condition = condition

    @contextlib.contextmanager
    def conditioned(self, condition: torch.Tensor | None) -> Iterator[None]:
        """Run a block with this condition; the previous one comes back on exit."""
        saved = self.condition
        try:
            self.set_condition(condition)
            yield
        finally:
            self.condition = saved

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, **kwargs: Any) -> Any:
        if self.condition is None:
            return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)
        c = self.condition.to(sample.device, sample.dtype)
        if c.shape[0] != sample.shape[0]:
            if sample.shape[0] % c.shape[0]:
                raise ValueError(f"ControlNetUNet: a condition batch of {c.shape[0]} does not divide the U-Net batch "
                                 f"of {sample.shape[0]}; give one condition per sample (or one for all)")
            c = c.repeat(sample.shape[0] // c.shape[0], 1, 1, 1)  # as cat([x, x]) under guidance
        # r_1..r_n, r_mid = ControlNet(x_t, t, text, c), each scaled by s
        down, mid = self.controlnet(sample, timestep, encoder_hidden_states=encoder_hidden_states, controlnet_cond=c,
                                    conditioning_scale=self.conditioning_scale, return_dict=False)
        # skip_j' = skip_j + s · r_j,  mid' = mid + s · r_mid (inside diffusers' U-Net forward)
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         down_block_additional_residuals=down, mid_block_additional_residual=mid, **kwargs)


def trainable_parameter_count(model: nn.Module) -> int:
    """Parameters with requires_grad (what an optimizer would update)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
