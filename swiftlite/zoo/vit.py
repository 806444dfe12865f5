"""``vit-tiny``: a ``transformers.ViTForImageClassification`` pretrained on the shapes world.

Pretraining task: which of the 5 shapes is in a 32×32 plain-style image, over 4 backgrounds,
9 positions, 3 sizes and 6 colours, so the features must ignore colour and place to succeed;
downstream tasks (colour, position, size, digits, and shapes drawn in unseen *styles*) then test
transfer. Images are
normalized to [-1, 1] (``ViTImageProcessor`` with mean = std = 0.5 is saved alongside).

Quality figure: top-1 accuracy on 1,000 held-out images (different seed); target ≥ 0.90.
``load("vit-tiny")`` returns the model in eval mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.shapes import SHAPES, shapes_dataset, to_pixel_values
from .recipe import Recipe, register

FULL: dict[str, Any] = dict(image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=4,
                            num_attention_heads=4, intermediate_size=128, styles=["plain"], n_train=30_000,
                            n_test=1000, steps=4000, batch_size=64, lr=1.5e-3, weight_decay=0.05,
                            warmup_steps=200, seed=0)
QUICK: dict[str, Any] = dict(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2,
                             num_attention_heads=2, intermediate_size=64, styles=["plain"], n_train=1500, n_test=200,
                             steps=150, batch_size=32, lr=2e-3, weight_decay=0.0, warmup_steps=10,
                             seed=0)


def _config(p: dict[str, Any]):
    from transformers import ViTConfig

    return ViTConfig(image_size=p["image_size"], patch_size=p["patch_size"], num_channels=3,
                     hidden_size=p["hidden_size"], num_hidden_layers=p["num_hidden_layers"],
                     num_attention_heads=p["num_attention_heads"], intermediate_size=p["intermediate_size"],
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     num_labels=len(SHAPES), id2label=dict(enumerate(SHAPES)),
                     label2id={s: i for i, s in enumerate(SHAPES)})


def accuracy(model, images, labels, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` on uint8 images (N, H, W, 3) with integer ``labels`` (N,)."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(labels), batch_size):
            logits = model(pixel_values=to_pixel_values(images[i:i + batch_size])).logits
            correct += (logits.argmax(-1) == torch.as_tensor(labels[i:i + batch_size])).sum().item()
    return correct / len(labels)


def build(out_dir: Path, p: dict[str, Any], progress: bool, part_dirs: dict[str, Path]) -> dict[str, float]:
    import numpy as np
    import torch
    from transformers import ViTForImageClassification, ViTImageProcessor

    from .. import train as training  # torch: loaded when a build runs, so `swiftlite zoo list` stays light

    torch.manual_seed(p["seed"])
    model = ViTForImageClassification(_config(p))
    train_set = shapes_dataset(p["n_train"], image_size=p["image_size"], seed=p["seed"], styles=p["styles"],
                               maps=False).select_columns(["image", "shape"]).with_format("torch")
    test = shapes_dataset(p["n_test"], image_size=p["image_size"], seed=p["seed"] + 10_000, styles=p["styles"],
                          maps=False).with_format("numpy")[:]
    test_images, test_labels = test["image"].astype(np.uint8), test["shape"]

    def loss_fn(model, batch):
        # cross-entropy of the shape label; pixel_values (B, 3, H, W) in [-1, 1]
        return model(pixel_values=to_pixel_values(batch["image"]), labels=batch["shape"]).loss

    history = training.train(model, train_set, loss_fn, steps=p["steps"], batch_size=p["batch_size"],
                             lr=p["lr"], weight_decay=p["weight_decay"], warmup_steps=p["warmup_steps"],
                             seed=p["seed"], progress=progress)
    acc = accuracy(model, test_images, test_labels)
    model.save_pretrained(out_dir)
    ViTImageProcessor(do_resize=False, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                      image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(out_dir)
    return {"heldout_accuracy": acc, "chance_accuracy": 1 / model.config.num_labels,
            "final_train_loss": float(np.mean(history.loss[-20:])),
            "n_parameters": float(sum(t.numel() for t in model.parameters()))}


def load(directory: Path):
    from transformers import ViTForImageClassification

    return ViTForImageClassification.from_pretrained(directory).eval()


RECIPE = register(Recipe(
    name="vit-tiny", version=1, full=FULL, quick=QUICK, build=build, load=load,
    description="ViTForImageClassification (32 px, patch 4) pretrained to classify shapes (plain style)",
    targets={"heldout_accuracy": ">= 0.90 (full build)"},
))
