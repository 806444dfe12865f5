"""SFT data for image + text models, as ms-swift's LLaVA template builds it.

A user turn holds one ``<image>`` placeholder per image. The processor
(``transformers.LlavaProcessor``) expands each placeholder to as many image tokens as the vision
tower yields patch features, ``N = (H / p) · (W / p)`` (patch size ``p``; a ViT/CLIP class token is
counted by ``num_additional_image_tokens=1`` and dropped again by
``vision_feature_select_strategy="default"``), and the model later writes the projected features
into exactly those positions (``inputs_embeds.masked_scatter(image_mask, image_features)``).
Labels follow the SFT mask of :mod:`swiftlite.llm.sft`, and image tokens are never scored::

    input_ids = [prompt with <image> × N] + response + [eos]
    labels_t  = -100  for prompt positions and wherever input_ids_t = image_token_id
    labels_t  = input_ids_t  for the response and the closing eos

Like ms-swift, a prompt without an ``<image>`` tag gets one in front (``"<image>\\n" + prompt``).

:func:`answer` asks a model questions about images (batched greedy ``generate``, left padding);
:func:`vqa_accuracy` scores exact-match answers per question type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .sft import IGNORE_INDEX, SFTCollator

__all__ = ["IMAGE_TOKEN", "llava_processor", "encode_image_example", "build_image_sft_dataset", "ImageSFTCollator",
           "evaluate_image_loss", "answer", "vqa_accuracy"]

IMAGE_TOKEN = "<image>"


def llava_processor(tokenizer, image_processor, *, patch_size: int, num_additional_image_tokens: int = 1,
                    vision_feature_select_strategy: str = "default", image_token: str = IMAGE_TOKEN):
    """A real ``LlavaProcessor`` around ``tokenizer`` (``image_token`` added to it as a special token
    if missing: resize the LM's embeddings to ``len(tokenizer)`` afterwards) and ``image_processor``."""
    from transformers import LlavaProcessor

    if image_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [image_token]})
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=patch_size,
                          vision_feature_select_strategy=vision_feature_select_strategy,
                          num_additional_image_tokens=num_additional_image_tokens, image_token=image_token,
                          chat_template=getattr(tokenizer, "chat_template", None))


def _prompt_text(processor, prompt: str) -> str:
    if IMAGE_TOKEN not in prompt:  # ms-swift adds the missing tag at the start of the user turn
        prompt = f"{IMAGE_TOKEN}\n{prompt}"
    if prompt.count(IMAGE_TOKEN) != 1:
        raise ValueError(f"encode_image_example: prompt {prompt!r} holds {prompt.count(IMAGE_TOKEN)} {IMAGE_TOKEN} "
                         "tags for one image; keep exactly one.")
    tokenizer = processor.tokenizer
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
    return f"{prompt}\n"


def encode_image_example(processor, prompt: str, response: str, image: np.ndarray,
                         max_length: int | None = None) -> dict[str, Any]:
    """``input_ids`` (``<image>`` expanded), ``labels`` (see the module docstring) of one example."""
    tokenizer = processor.tokenizer
    if tokenizer.eos_token_id is None:
        raise ValueError("encode_image_example: the tokenizer has no eos_token_id; the response must end with one.")
    enc = processor(text=[_prompt_text(processor, prompt)], images=[np.asarray(image)], add_special_tokens=False)
    prompt_ids = list(enc["input_ids"][0])
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = prompt_ids + response_ids
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    labels = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    labels = [IGNORE_INDEX if t == image_id else y for t, y in zip(input_ids, labels)]  # image tokens: never scored
    if max_length is not None:
        if len(prompt_ids) >= max_length:
            raise ValueError(f"encode_image_example(max_length={max_length}): the prompt alone has "
                             f"{len(prompt_ids)} tokens (image tokens included); cutting it would cut image tokens. "
                             "Raise max_length.")
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def build_image_sft_dataset(records, processor, *, prompt_column: str = "question", response_column: str = "answer",
                            image_column: str = "image", max_length: int | None = None):
    """Tokenize image records (e.g. :func:`swiftlite.data.vqa_dataset`) for SFT.

    Returns a ``datasets.Dataset`` with ``input_ids``, ``labels``, ``attention_mask`` and the
    ``image`` (uint8, turned into ``pixel_values`` per batch by :class:`ImageSFTCollator`).
    """
    import datasets

    for column in (prompt_column, response_column, image_column):
        if column not in records.column_names:
            raise KeyError(f"build_image_sft_dataset: no column {column!r}; columns are {records.column_names}. "
                           "Pass prompt_column= / response_column= / image_column=.")
    rows: dict[str, list] = {"input_ids": [], "labels": [], "attention_mask": [], "image": []}
    data = records.with_format("numpy")
    for i in range(len(records)):
        row = data[i]
        enc = encode_image_example(processor, str(row[prompt_column]), str(row[response_column]),
                                   row[image_column], max_length=max_length)
        rows["input_ids"].append(enc["input_ids"])
        rows["labels"].append(enc["labels"])
        rows["attention_mask"].append([1] * len(enc["input_ids"]))
        rows["image"].append(np.asarray(row[image_column], dtype=np.uint8))
    features = records.features[image_column]
    return datasets.Dataset.from_dict(rows, features=datasets.Features({
        "input_ids": datasets.Sequence(datasets.Value("int32")), "labels": datasets.Sequence(datasets.Value("int32")),
        "attention_mask": datasets.Sequence(datasets.Value("int8")), "image": features}))


@dataclass
class ImageSFTCollator:
    """Right-pads text as :class:`swiftlite.llm.SFTCollator` and adds ``pixel_values`` (B, 3, H, W)
    from the examples' uint8 images through the processor's image processor."""

    image_processor: Any
    pad_token_id: int = 0

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = SFTCollator(pad_token_id=self.pad_token_id)(examples)
        images = [np.asarray(e["image"], dtype=np.uint8) for e in examples]
        batch["pixel_values"] = self.image_processor(images, return_tensors="pt")["pixel_values"]
        return batch


@torch.no_grad()
def evaluate_image_loss(model, dataset, collate_fn: ImageSFTCollator, *, batch_size: int = 64) -> float:
    """Held-out NLL per scored (response) token: ``model(**batch).loss`` weighted by each batch's
    count of scored tokens, in eval mode (mode restored)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(dataset), batch_size):
            batch = collate_fn([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            n = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())  # the model shifts labels by one
            total, count = total + model(**batch).loss.item() * n, count + n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_image_loss: the dataset has no labelled token.")
    return total / count


@torch.no_grad()
def answer(model, processor, images: Sequence[np.ndarray], questions: Sequence[str], *, max_new_tokens: int = 6,
           batch_size: int = 64) -> list[str]:
    """Greedy answers of ``model`` (a LLaVA-style model or a SwiftModel around one) to ``questions``
    about ``images``: batched ``generate`` with left padding, in eval mode (mode restored)."""
    if len(images) != len(questions):
        raise ValueError(f"answer: {len(images)} images but {len(questions)} questions; give one image per question.")
    tokenizer = processor.tokenizer
    side, was_training = tokenizer.padding_side, model.training
    tokenizer.padding_side = "left"  # generation continues every row at the same position
    model.eval()
    out: list[str] = []
    try:
        for start in range(0, len(questions), batch_size):
            texts = [_prompt_text(processor, q) for q in questions[start:start + batch_size]]
            imgs = [np.asarray(im, dtype=np.uint8) for im in images[start:start + batch_size]]
            enc = processor(text=texts, images=imgs, padding=True, return_tensors="pt", add_special_tokens=False)
            ids = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new = ids[:, enc["input_ids"].shape[1]:]  # (B, new tokens)
            out += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def vqa_accuracy(model, processor, records, *, batch_size: int = 64) -> dict[str, float]:
    """Exact-match accuracy of greedy answers on ``records`` (``image``, ``question``, ``answer``,
    ``qtype``): one figure per question type and ``"all"``."""
    data = records.with_format("numpy")[:]
    predictions = answer(model, processor, list(data["image"]), [str(q) for q in data["question"]],
                         batch_size=batch_size)
    hits = np.array([p == str(a) for p, a in zip(predictions, data["answer"])])
    qtypes = np.array([str(q) for q in data["qtype"]])
    scores = {str(q): float(hits[qtypes == q].mean()) for q in sorted(set(qtypes))}
    scores["all"] = float(hits.mean())
    return scores
