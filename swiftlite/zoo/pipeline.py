"""Text-to-image sampling for a (possibly tuned) pixel-space U-Net, with classifier-free guidance.

Classifier-free guidance (Ho & Salimans, arXiv:2207.12598) mixes the conditional and the
unconditional (empty prompt) predictions of the same network:

    ε̂(x_t, c) = ε_θ(x_t, ∅) + w · (ε_θ(x_t, c) − ε_θ(x_t, ∅))          (w = guidance_scale)

(here the network predicts v, and the same mixing is applied to v). Steps follow DDIM (Song et
al., arXiv:2010.02502) built from the training scheduler's config.

The U-Net is called as ``unet(x, t, encoder_hidden_states=ctx, **unet_kwargs)`` and may return a
diffusers output (``.sample``), a tuple, or a tensor, so any ``nn.Module`` works, including a
U-Net wrapped by ``Swift.prepare_model`` or modified in place by a tuner. ``extra_inputs`` (e.g. a
source image or a mask, as StyleBooth / LAR-Gen use) are concatenated to ``x_t`` on channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn


def unet_output(out: Any) -> torch.Tensor:
    """The predicted tensor of a U-Net call, whatever wrapper returned it."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "sample"):
        return out.sample
    if isinstance(out, (tuple, list)):
        return out[0]
    raise TypeError(f"the U-Net returned {type(out).__name__}; expected a tensor, a tuple or an object "
                    "with .sample")


@dataclass
class TinyDiffusionPipeline:
    """``unet`` + ``scheduler`` (training, e.g. DDPM) + ``text_encoder`` + ``tokenizer``; pixel space."""

    unet: nn.Module
    scheduler: Any
    text_encoder: nn.Module
    tokenizer: Any
    image_size: int = 16

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Token embeddings (B, L, D) of ``prompts`` (last hidden state of the text encoder)."""
        device = next(self.text_encoder.parameters()).device
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")["input_ids"].to(device)
        return self.text_encoder(input_ids=ids).last_hidden_state

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str] | str, *, num_inference_steps: int = 25,
                 guidance_scale: float = 1.5, seed: int = 0, extra_inputs: torch.Tensor | None = None,
                 unet_kwargs: dict | None = None, output_type: str = "np") -> np.ndarray | torch.Tensor:
        """Sample one image per prompt. Returns uint8 (B, H, W, 3) or, with ``output_type="pt"``,
        the float tensor (B, 3, H, W) in [-1, 1]."""
        from diffusers import DDIMScheduler

        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        b, s = len(prompts), self.image_size
        device = next(self.unet.parameters()).device
        scheduler = DDIMScheduler.from_config(self.scheduler.config, timestep_spacing="trailing")
        scheduler.set_timesteps(num_inference_steps)
        cond = self.encode_prompt(prompts)  # (B, L, D)
        use_cfg = guidance_scale != 1.0
        ctx = torch.cat([self.encode_prompt([""] * b), cond]) if use_cfg else cond  # (2B or B, L, D)
        generator = torch.Generator().manual_seed(seed)
        out_channels = getattr(getattr(self.unet, "config", None), "out_channels", 3)
        x = torch.randn(b, out_channels, s, s, generator=generator).to(device) * scheduler.init_noise_sigma
        kwargs = dict(unet_kwargs or {})
        was_training = self.unet.training
        self.unet.eval()
        try:
            for t in scheduler.timesteps:
                x_in = x if extra_inputs is None else torch.cat([x, extra_inputs.to(device)], dim=1)
                x_in = torch.cat([x_in, x_in]) if use_cfg else x_in  # (2B, C, H, W)
                pred = unet_output(self.unet(x_in, t.to(device), encoder_hidden_states=ctx, **kwargs))
                if use_cfg:
                    uncond, cond_pred = pred.chunk(2)
                    # ε̂ = ε(∅) + w (ε(c) − ε(∅))
                    pred = uncond + guidance_scale * (cond_pred - uncond)
                x = scheduler.step(pred, t, x).prev_sample
        finally:
            self.unet.train(was_training)
        x = x.clamp(-1, 1)
        if output_type == "pt":
            return x
        from ..data.shapes import to_uint8_images

        return to_uint8_images(x)

    def save_pretrained(self, directory: str | Path) -> None:
        """diffusers-style layout: ``unet/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``."""
        d = Path(directory)
        self.unet.save_pretrained(d / "unet")
        self.scheduler.save_pretrained(d / "scheduler")
        self.text_encoder.save_pretrained(d / "text_encoder")
        self.tokenizer.save_pretrained(d / "tokenizer")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "TinyDiffusionPipeline":
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, PreTrainedTokenizerFast

        d = Path(directory)
        unet = UNet2DConditionModel.from_pretrained(d / "unet").eval()
        return cls(unet=unet, scheduler=DDPMScheduler.from_pretrained(d / "scheduler"),
                   text_encoder=CLIPTextModel.from_pretrained(d / "text_encoder").eval(),
                   tokenizer=PreTrainedTokenizerFast.from_pretrained(d / "tokenizer"),
                   image_size=int(unet.config.sample_size))
