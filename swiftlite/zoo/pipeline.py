"""Text-to-image sampling for a (possibly tuned) pixel-space U-Net: the zoo's diffusers-style pipeline.

:class:`TinyDiffusionPipeline` holds ``unet`` + training ``scheduler`` + ``text_encoder`` +
``tokenizer`` and saves / loads them in diffusers' folder layout. Calling it samples with
classifier-free guidance and DDIM; the loop itself is :func:`swiftlite.diffusion.sample` (one
implementation of guidance for the whole package, with the equation in its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..diffusion.sampling import sample


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

    def __call__(self, prompts: Sequence[str] | str, *, num_inference_steps: int = 25,
                 guidance_scale: float = 1.5, seed: int = 0, extra_inputs: torch.Tensor | None = None,
                 unet_kwargs: dict | None = None, output_type: str = "np") -> np.ndarray | torch.Tensor:
        """Sample one image per prompt with DDIM and classifier-free guidance (``guidance_scale``;
        1 skips the unconditional half): :func:`swiftlite.diffusion.sample` with ``scheduler="ddim"``.
        Returns uint8 (B, H, W, 3) or, with ``output_type="pt"``, the float tensor (B, 3, H, W) in [-1, 1]."""
        return sample(self, prompts, scheduler="ddim", num_inference_steps=num_inference_steps,
                      guidance_scale=guidance_scale, seed=seed, extra_inputs=extra_inputs, unet_kwargs=unet_kwargs,
                      output_type=output_type)

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
