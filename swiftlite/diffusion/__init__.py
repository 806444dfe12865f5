"""Diffusion helpers around diffusers: text-to-image fine-tuning, guided sampling, metrics.

    from swiftlite.diffusion import text_to_image_dataset, TextToImageLoss, sample, sample_grid
    from swiftlite.diffusion import style_accuracy, prompt_adherence, mask_iou, edge_agreement

* :mod:`swiftlite.diffusion.training` — a shapes-world caption/image dataset tokenised with the
  pipeline's tokenizer, and the loss (ε / v / x₀ target read from the scheduler's
  ``prediction_type``) that :func:`swiftlite.train.train` optimises for any Swift-tuned U-Net.
* :mod:`swiftlite.diffusion.sampling` — classifier-free guidance with any diffusers scheduler
  (DDPM, DDIM, ... built with ``from_config``), seeded, with a ``condition=`` that is handed to a
  caller-supplied context manager (how a Controllable SC-Tuner or a ControlNet receives its hint),
  and a sample-grid figure.
* :mod:`swiftlite.diffusion.metrics` — style-classifier accuracy, prompt adherence by the zoo's
  judge, mask IoU against a condition mask, edge agreement.
* :mod:`swiftlite.diffusion.widen` — ``conv_in`` widened to 8 (InstructPix2Pix editing) or 9 (inpainting)
  input channels with zero-initialised new weights, and diffusers' editing / inpainting pipelines around it.
* :mod:`swiftlite.diffusion.stylebooth` / :mod:`~swiftlite.diffusion.stylebooth_data` — StyleBooth's 8-channel
  editor (condition dropout, two-scale guidance with rescale, exemplar token) and its style/de-style data loop.
* :mod:`swiftlite.diffusion.memory` — where training memory goes: SC-Tuner against LoRA on the same
  U-Net, with the bytes saved for backward per U-Net part (SCEdit's memory claim).

Names load lazily: importing this package does not import diffusers or transformers.
"""
from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    # training
    "text_to_image_dataset": "training", "TextToImageLoss": "training", "diffusion_target": "training",
    "PREDICTION_TYPES": "training", "as_condition": "training", "sc_tuner_config": "training",
    "UP_RESNETS": "training", "unet_skips": "training", "skip_flow": "training",
    # sampling
    "sample": "sampling", "make_scheduler": "sampling", "sample_grid": "sampling", "unet_output": "sampling",
    "repeat_condition": "sampling", "prompt_embeddings": "sampling",
    # channel-expanded U-Nets
    "widen_conv_in": "widen", "instruct_pix2pix_pipeline": "widen", "inpaint_pipeline": "widen",
    # StyleBooth: the editor and its data loop
    "StyleBooth": "stylebooth", "StyleBoothConfig": "stylebooth", "StyleBoothLoss": "stylebooth",
    "stylebooth_edit": "stylebooth", "dual_guidance": "stylebooth", "condition_dropout": "stylebooth",
    "style_destyle_loop": "stylebooth_data", "usability_filter": "stylebooth_data", "train_stylebooth": "stylebooth_data",
    # metrics
    "StyleClassifier": "metrics", "style_classifier": "metrics", "style_accuracy": "metrics",
    "prompt_adherence": "metrics", "object_mask": "metrics", "mask_iou": "metrics", "mask_edges": "metrics",
    "edge_agreement": "metrics", "score_samples": "metrics",
    # memory
    "compare_memory": "memory", "memory_report": "memory", "memory_figure": "memory", "sd_layout_unet": "memory",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, ("training", "sampling", "metrics", "memory", "controlnet", "widen", "stylebooth",
                                                           "stylebooth_data"))
