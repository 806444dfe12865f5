"""``llava-tiny``: a ``transformers.LlavaForConditionalGeneration`` made from the zoo's own parts and
trained in LLaVA's two stages (Liu et al., "Visual Instruction Tuning", arXiv:2304.08485), with
ms-swift's ``freeze_*`` flags (:mod:`swiftlite.llm.multimodal`).

Parts: the vision tower is ``vit-tiny``'s ViT encoder (its patch features of layer -2, class
token dropped), the language model ``llama-tiny`` (its tokenizer gains an ``<image>`` token), and
a new 2-layer GELU projector ``H_v = W_2 · GELU(W_1 · Z_v)``.

- Stage 1 (feature alignment; ``freeze_llm=True, freeze_vit=True, freeze_aligner=False``): only the
  projector trains, on captions of shapes-world scenes ("a red circle at the top left and ...").
- Stage 2 (visual instruction tuning; ``freeze_llm=False, freeze_vit=True, freeze_aligner=False``,
  LLaVA's full recipe): LLM and projector train on visual questions
  (:func:`swiftlite.data.vqa_dataset`: colour / shape / count / position).

Quality figures: exact-match VQA accuracy of greedy answers per question type on held-out scenes
(another seed), with the majority-answer baseline of each type. ``load("llava-tiny")`` returns
``(model, processor)``; the stage-1 projector is kept in ``stage1_aligner.safetensors`` (for
comparing stage 1 with stage 2, or tuning stage 2 another way).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from . import llama as _llama
from . import vit as _vit
from .recipe import Recipe, register

STAGE1_ALIGNER = "stage1_aligner.safetensors"

# the parts' recipe hashes: a rebuilt vit-tiny or llama-tiny invalidates llava-tiny
FULL: dict[str, Any] = dict(quick_parts=False, parts={"vit-tiny": _vit.RECIPE.hash(False)[:12], "llama-tiny": _llama.RECIPE.hash(False)[:12]},
                            vision_feature_layer=-2, max_objects=3, n_captions=6000, stage1_steps=400, stage1_lr=2e-3,
                            n_questions=16000, stage2_steps=1400, stage2_lr=1e-3, aligner_lr=1e-3, batch_size=16,
                            warmup_steps=50, n_test=800, seed=0)
QUICK: dict[str, Any] = dict(quick_parts=True, parts={"vit-tiny": _vit.RECIPE.hash(True)[:12], "llama-tiny": _llama.RECIPE.hash(True)[:12]},
                             vision_feature_layer=-2, max_objects=3, n_captions=200, stage1_steps=15, stage1_lr=2e-3,
                             n_questions=300, stage2_steps=25, stage2_lr=1e-3, aligner_lr=1e-3, batch_size=16,
                             warmup_steps=3, n_test=40, seed=0)
CAPTION_PROMPT = "what is in the picture?"


def assemble(vit_dir: Path, llama_dir: Path, vision_feature_layer: int = -2, seed: int = 0):
    """A ``LlavaForConditionalGeneration`` holding the ViT of ``vit_dir`` and the Llama of
    ``llama_dir`` (embeddings resized for the new ``<image>`` token), a fresh projector, and its
    ``LlavaProcessor``."""
    # torch, transformers and swiftlite.llm load here, when a build runs: `swiftlite zoo list` stays light
    import torch
    from transformers import (AutoImageProcessor, AutoTokenizer, LlamaForCausalLM, LlavaConfig,
                              LlavaForConditionalGeneration, ViTForImageClassification)

    from ..llm.image_sft import IMAGE_TOKEN, llava_processor

    vit = ViTForImageClassification.from_pretrained(vit_dir)
    lm = LlamaForCausalLM.from_pretrained(llama_dir)
    tokenizer = AutoTokenizer.from_pretrained(llama_dir)
    processor = llava_processor(tokenizer, AutoImageProcessor.from_pretrained(vit_dir),
                                patch_size=vit.config.patch_size)
    torch.manual_seed(seed)
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    n_patches = (vit.config.image_size // vit.config.patch_size) ** 2
    vision_config = vit.config.to_dict()
    for key in ("id2label", "label2id", "architectures"):
        vision_config.pop(key, None)
    config = LlavaConfig(vision_config=vision_config, text_config=lm.config.to_dict(),
                         image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN), image_seq_length=n_patches,
                         vision_feature_layer=vision_feature_layer, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu", tie_word_embeddings=lm.config.tie_word_embeddings)
    model = LlavaForConditionalGeneration(config)
    missing, unexpected = model.model.vision_tower.load_state_dict(vit.vit.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pooler.") for k in missing):  # ViTModel's pooler is unused by LLaVA
        raise RuntimeError(f"llava-tiny: the ViT weights do not fit the vision tower ({missing}, {unexpected})")
    model.model.language_model.load_state_dict(lm.model.state_dict())
    model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, processor


def _majority(records) -> dict[str, float]:
    """Accuracy of always answering each question type's most frequent answer (a no-vision baseline)."""
    by_type: dict[str, Counter] = {}
    for qtype, ans in zip(records["qtype"], records["answer"]):
        by_type.setdefault(qtype, Counter())[ans] += 1
    return {q: c.most_common(1)[0][1] / sum(c.values()) for q, c in by_type.items()}


def build(out_dir: Path, p: dict[str, Any], progress: bool, part_dirs: dict[str, Path]) -> dict[str, float]:
    # torch and the training loop load here, when a build runs: `swiftlite zoo list` stays light
    import numpy as np
    from safetensors.torch import save_file

    from .. import train as training
    from ..data.vqa import vqa_dataset
    from ..llm.image_sft import ImageSFTCollator, build_image_sft_dataset, evaluate_image_loss, vqa_accuracy
    from ..llm.multimodal import freeze_parts, multimodal_param_groups

    # part_dirs: the hub's builds of vit-tiny and llama-tiny (the quick ones for the quick build)
    model, processor = assemble(part_dirs["vit-tiny"], part_dirs["llama-tiny"], p["vision_feature_layer"], p["seed"])
    size = model.config.vision_config.image_size
    collate = ImageSFTCollator(processor.image_processor, pad_token_id=processor.tokenizer.pad_token_id)
    scenes = vqa_dataset(p["n_captions"], image_size=size, seed=p["seed"] + 1, max_objects=p["max_objects"])
    captions = build_image_sft_dataset(scenes.map(lambda r: {"prompt": CAPTION_PROMPT}), processor,
                                       prompt_column="prompt", response_column="caption")
    questions = vqa_dataset(p["n_questions"], image_size=size, seed=p["seed"] + 2, max_objects=p["max_objects"])
    test = vqa_dataset(p["n_test"], image_size=size, seed=p["seed"] + 10_000, max_objects=p["max_objects"])
    test_sft = build_image_sft_dataset(test, processor)

    def loss_fn(model, batch):
        return model(**batch).loss  # LLaVA shifts labels; -100 (prompt, image tokens) not scored

    # stage 1: the projector alone learns to map image features into the frozen LLM's word space
    freeze_parts(model, freeze_llm=True, freeze_vit=True, freeze_aligner=False)
    h1 = training.train(model, captions, loss_fn, steps=p["stage1_steps"], batch_size=p["batch_size"],
                        lr=p["stage1_lr"], warmup_steps=p["warmup_steps"], collate_fn=collate, seed=p["seed"],
                        progress=progress)
    aligner = {n: t.detach().clone().contiguous() for n, t in model.named_parameters() if "multi_modal_projector" in n}
    save_file(aligner, str(out_dir / STAGE1_ALIGNER), metadata={"format": "pt"})
    stage1_test_loss = evaluate_image_loss(model, test_sft, collate)

    # stage 2: LLM + projector learn to answer (the vision tower stays frozen)
    freeze_parts(model, freeze_llm=False, freeze_vit=True, freeze_aligner=False)
    train_sft = build_image_sft_dataset(questions, processor)
    groups = multimodal_param_groups(model, lr=p["stage2_lr"], aligner_lr=p["aligner_lr"])
    h2 = training.train(model, train_sft, loss_fn, steps=p["stage2_steps"], batch_size=p["batch_size"],
                        lr=p["stage2_lr"], warmup_steps=p["warmup_steps"], collate_fn=collate, seed=p["seed"],
                        progress=progress, param_groups=groups)
    model.requires_grad_(False)
    model.eval()
    figures: dict[str, float] = {}
    figures.update({f"vqa_accuracy_{k}": v for k, v in vqa_accuracy(model, processor, test).items()})
    figures.update({f"majority_baseline_{k}": v for k, v in _majority(test).items()})
    figures.update(stage1_final_caption_loss=float(np.mean(h1.loss[-20:])),
                   stage1_test_answer_loss=stage1_test_loss,
                   stage2_test_answer_loss=evaluate_image_loss(model, test_sft, collate),
                   stage2_final_train_loss=float(np.mean(h2.loss[-20:])),
                   stage1_seconds=h1.seconds, stage2_seconds=h2.seconds,
                   n_parameters=float(sum(t.numel() for t in model.parameters())))
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return figures


def vqa_figure(stamp: dict):
    """Bar chart of the stamped VQA accuracy per question type beside the majority-answer baseline."""
    import matplotlib.pyplot as plt  # matplotlib and viz load only when the figure is drawn

    from ..data.vqa import QTYPES
    from ..viz import grouped_bars

    figures = stamp["figures"]
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    grouped_bars(list(QTYPES), {"majority answer (no image)": [figures[f"majority_baseline_{q}"] for q in QTYPES],
                                "llava-tiny (greedy, exact match)": [figures[f"vqa_accuracy_{q}"] for q in QTYPES]},
                 ax=ax, xlabel=f"held-out accuracy ({stamp['params']['n_test']} questions)",
                 title=f"llava-tiny VQA accuracy per question type ({'quick' if stamp['quick'] else 'full'} build)")
    return fig


def load(directory: Path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(directory).eval(), AutoProcessor.from_pretrained(directory)


RECIPE = register(Recipe(
    name="llava-tiny", version=1, full=FULL, quick=QUICK, build=build, load=load,
    description="LlavaForConditionalGeneration (vit-tiny + projector + llama-tiny) trained in LLaVA's two stages "
                "on shapes-world captions and visual questions",
    targets={"vqa_accuracy_all": "well above the majority baselines (full build)"},
    parts=("vit-tiny", "llama-tiny"),
))
