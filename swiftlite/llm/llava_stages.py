"""LLaVA's stage 2 tuned several ways from the zoo's stage-1 ``llava-tiny`` (tutorial 11's arms).

Stage 1 (:mod:`swiftlite.zoo.llava`) trained the projector alone. Stage 2 teaches the model to
answer visual questions; ms-swift offers several ways to do it, each a call of
:mod:`swiftlite.llm.multimodal`:

- ``"lora"``: LoRA on the LLM's Linear layers only (ms-swift's defaults ``freeze_vit=True,
  freeze_aligner=True``: ``target_modules="all-linear"`` covers the LLM);
- ``"lora_llm"``: LoRA on the LLM plus full training of the vision tower and projector;
- ``"full"``: LLaVA's own stage 2, full training of the LLM and the projector (``freeze_vit=True``).
"""

from __future__ import annotations

from typing import Any

import torch

from .. import zoo
from ..api import Swift
from ..train import train
from ..tuners import LoRAConfig
from ..zoo import llava
from .image_sft import ImageSFTCollator
from .multimodal import freeze_parts, multimodal_target_regex, prepare_lora_llm

__all__ = ["STAGE2_METHODS", "stage1_model", "tune_stage2"]

STAGE2_METHODS = ("lora", "lora_llm", "full")


def stage1_model(quick: bool | None = None):
    """``(model, processor)`` after stage 1: vit-tiny + the stage-1 projector + llama-tiny as pretrained."""
    from safetensors.torch import load_file

    quick = zoo.quick_mode(quick)
    directory = zoo.path("llava-tiny", quick=quick, progress=False)
    stamp = zoo.read_stamp(directory)
    model, processor = llava.assemble(zoo.path("vit-tiny", quick=quick, progress=False),
                                      zoo.path("llama-tiny", quick=quick, progress=False),
                                      stamp["params"]["vision_feature_layer"], stamp["params"]["seed"])
    missing = model.load_state_dict(load_file(str(directory / llava.STAGE1_ALIGNER)), strict=False).missing_keys
    assert not any("multi_modal_projector" in k for k in missing)
    return model.eval(), processor


def tune_stage2(method: str, train_set, processor, *, steps: int, seed: int, batch_size: int = 16,
                lr: float | None = None, quick: bool | None = None) -> dict[str, Any]:
    """Stage 2 with ``method`` (see :data:`STAGE2_METHODS`) on ``train_set`` (from
    :func:`swiftlite.llm.image_sft.build_image_sft_dataset`) from a fresh stage-1 model.
    Returns ``{"model", "history", "trainable"}`` (trainable = number of trained weights)."""
    if method not in STAGE2_METHODS:
        raise ValueError(f"tune_stage2(method={method!r}): expected one of {STAGE2_METHODS}")
    torch.manual_seed(seed)  # LoRA's A init
    model, _ = stage1_model(quick)
    if method == "lora":
        model = Swift.prepare_model(model, LoRAConfig(r=8, lora_alpha=32, target_modules=multimodal_target_regex(model)))
    elif method == "lora_llm":
        model = prepare_lora_llm(model, r=8, lora_alpha=32, lora_dropout=0.0)
    else:
        freeze_parts(model, freeze_llm=False, freeze_vit=True, freeze_aligner=False)
    lr = lr if lr is not None else (1e-3 if method == "full" else 2e-3)
    collate = ImageSFTCollator(processor.image_processor, pad_token_id=processor.tokenizer.pad_token_id)
    history = train(model, train_set, lambda m, b: m(**b).loss, steps=steps, batch_size=batch_size, lr=lr,
                    warmup_steps=max(1, steps // 20), collate_fn=collate, seed=seed, progress=False)
    return {"model": model.eval(), "history": history,
            "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
