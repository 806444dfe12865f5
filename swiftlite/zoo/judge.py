"""A small CNN that names the shape and the colour in a shapes-world image.

Used to score generated images: a text-to-image model "draws a red circle" when the judge, which
is trained on real rendered images only, says shape = circle and colour = red. Its own held-out
accuracy on real images is reported beside the score, so a poor judge cannot hide.

    h = GAP(ReLU(conv_s2(ReLU(conv_s2(ReLU(conv(x)))))))       (B, 64)
    p(shape | x) = softmax(W_s h),  p(colour | x) = softmax(W_c h)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import train as training
from ..data.scenes import scenes_dataset
from ..data.shapes import COLOURS, POSITIONS, SHAPES, shapes_dataset, to_pixel_values


def image_features(width: int) -> nn.Sequential:
    """A small conv encoder: (B, 3, H, W) -> (B, 2·width), three 3×3 convs (two strided) and average pooling."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),  # (B, 2·width)
    )


class ShapeColourJudge(nn.Module):
    def __init__(self, shapes: Sequence[str] = SHAPES, colours: Sequence[str] = tuple(COLOURS), width: int = 32):
        super().__init__()
        self.shapes, self.colours, self.width = list(shapes), list(colours), width
        self.features = image_features(width)  # (B, 3, H, W) -> (B, 2·width)
        self.shape_head = nn.Linear(2 * width, len(self.shapes))
        self.colour_head = nn.Linear(2 * width, len(self.colours))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixel_values (B, 3, H, W) in [-1, 1] -> (shape logits, colour logits)."""
        h = self.features(pixel_values)
        return self.shape_head(h), self.colour_head(h)

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> tuple[list[str], list[str]]:
        """uint8 images (B, H, W, 3) -> (shape names, colour names)."""
        self.eval()
        s, c = self(to_pixel_values(images))
        return [self.shapes[i] for i in s.argmax(-1)], [self.colours[i] for i in c.argmax(-1)]

    def save_pretrained(self, directory: str | Path) -> None:
        save_small_model(self, directory, {"shapes": self.shapes, "colours": self.colours, "width": self.width})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "ShapeColourJudge":
        return load_small_model(cls, directory)


def save_small_model(model: nn.Module, directory: str | Path, config: dict) -> None:
    """`directory/config.json` (the constructor's keyword arguments) + `model.safetensors`."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"))


def load_small_model(cls: type, directory: str | Path) -> nn.Module:
    """The inverse of `save_small_model`: `cls(**config)` with the saved weights, in eval mode."""
    from safetensors.torch import load_file

    d = Path(directory)
    model = cls(**json.loads((d / "config.json").read_text()))
    model.load_state_dict(load_file(str(d / "model.safetensors")))
    return model.eval()


def train_judge(image_size: int, *, n_train: int, steps: int, seed: int = 0, progress: bool = False,
                backgrounds: Sequence[str] = ("black",), sizes: Sequence[str] = ("medium", "large"),
                ) -> tuple[ShapeColourJudge, dict[str, float]]:
    """Train a judge on plain rendered images; returns it and its held-out accuracies."""
    torch.manual_seed(seed)
    judge = ShapeColourJudge()
    common = dict(image_size=image_size, maps=False, backgrounds=backgrounds, sizes=sizes)
    train_set = shapes_dataset(n_train, seed=seed + 20_000, **common).select_columns(
        ["image", "shape", "colour"]).with_format("torch")

    def loss_fn(model, batch):
        s, c = model(to_pixel_values(batch["image"]))
        return nn.functional.cross_entropy(s, batch["shape"]) + nn.functional.cross_entropy(c, batch["colour"])

    training.train(judge, train_set, loss_fn, steps=steps, batch_size=64, lr=3e-3, seed=seed, progress=progress)
    test = shapes_dataset(500, seed=seed + 30_000, **common).with_format("numpy")[:]
    shapes, colours = judge.predict(test["image"].astype(np.uint8))
    shape_acc = np.mean([s == SHAPES[i] for s, i in zip(shapes, test["shape"])])
    colour_acc = np.mean([c == list(COLOURS)[i] for c, i in zip(colours, test["colour"])])
    return judge, {"judge_shape_accuracy": float(shape_acc), "judge_colour_accuracy": float(colour_acc)}


class SceneJudge(nn.Module):
    """Names shape, colour, position (3×3 grid), style and size of the (first) object of a 32-px scene.

    The features keep a 3×3 spatial grid (adaptive average pooling to 3×3 instead of a global
    average), so the position head sees where the object is::

        h = flatten(pool₃ₓ₃(ReLU(conv_s2(ReLU(conv_s2(ReLU(conv(x))))))))     (B, 9 · 2·width)
        p(factor | x) = softmax(W_factor h)          for factor in shape, colour, position, style, size
    """

    def __init__(self, labels: dict[str, Sequence[str]], width: int = 32):
        super().__init__()
        self.labels, self.width = {k: list(v) for k, v in labels.items()}, width
        convs = list(image_features(width))[:-2]  # drop the global pooling and flatten
        self.features = nn.Sequential(*convs, nn.AdaptiveAvgPool2d(3), nn.Flatten())  # (B, 18·width)
        self.heads = nn.ModuleDict({k: nn.Linear(18 * width, len(v)) for k, v in self.labels.items()})

    def forward(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """pixel_values (B, 3, H, W) in [-1, 1] -> {factor: logits}."""
        h = self.features(pixel_values)
        return {k: head(h) for k, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> dict[str, list[str]]:
        """uint8 images (B, H, W, 3) -> {factor: names}."""
        self.eval()
        logits = self(to_pixel_values(images))
        return {k: [self.labels[k][i] for i in v.argmax(-1)] for k, v in logits.items()}

    def save_pretrained(self, directory: str | Path) -> None:
        save_small_model(self, directory, {"labels": self.labels, "width": self.width})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "SceneJudge":
        return load_small_model(cls, directory)


def train_scene_judge(p: dict, *, progress: bool = False) -> tuple[SceneJudge, dict[str, float]]:
    """A :class:`SceneJudge` trained on one-object scenes of recipe ``p`` (``shapes``, ``colours``,
    ``sizes``, ``styles``, ``backgrounds``, ``image_size``, ``n_judge``, ``judge_steps``, ``judge_width``,
    ``seed``); returns it and its held-out accuracy per factor on 500 real renders."""
    factors = ("shape", "colour", "position", "style", "size")
    world = dict(image_size=p["image_size"], shapes=p["shapes"], colours=p["colours"], sizes=p["sizes"],
                 styles=p["styles"], backgrounds=p["backgrounds"], positions=tuple(POSITIONS), p_second=0.0, maps=False)
    torch.manual_seed(p["seed"])
    train_set = scenes_dataset(p["n_judge"], seed=p["seed"] + 20_000, **world)
    labels = {k: train_set.features[k].names for k in factors}
    judge = SceneJudge(labels, width=p["judge_width"])

    def loss_fn(model, batch):
        logits = model(to_pixel_values(batch["image"]))
        return sum(nn.functional.cross_entropy(logits[k], batch[k]) for k in factors)

    training.train(judge, train_set.select_columns(["image", *factors]).with_format("torch"), loss_fn,
                   steps=p["judge_steps"], batch_size=64, lr=3e-3, seed=p["seed"], progress=progress)
    test = scenes_dataset(500, seed=p["seed"] + 30_000, **world)
    got = judge.predict(np.asarray(test.with_format("numpy")["image"], dtype=np.uint8))
    return judge, {f"judge_{k}_accuracy": float(np.mean([g == labels[k][i] for g, i in zip(got[k], test[k])]))
                   for k in factors}
