"""Quality proxies for generated shapes-world images: style, prompt adherence, mask and edge agreement.

* **Style accuracy** — the fraction of samples that a small CNN, trained on *real* rendered images
  of every shapes-world style, assigns to the wanted style. The classifier (three heads: style,
  shape, colour) is built on first use and cached (``<swiftlite cache>/diffusion/``), with its own
  held-out accuracies on real images stored beside it, so a weak classifier cannot hide::

      h = GAP(ReLU(conv_s2(ReLU(conv_s2(ReLU(conv(x)))))))       (B, 2·width)
      p(style | x) = softmax(W_style h)    (likewise shape and colour)

* **Prompt adherence** — the zoo's :class:`~swiftlite.zoo.judge.ShapeColourJudge` (trained on plain
  images) names the shape and the colour; a sample adheres when both match its prompt.
* **Mask IoU** — the generated object's mask (:func:`object_mask`: pixels whose colour differs from
  the background, estimated from the image border) against a condition mask M::

      IoU = |M̂ ∩ M| / |M̂ ∪ M|          (1 when both are empty)

* **Edge agreement** — an F1 score between the generated object's boundary Ê (:func:`mask_edges`)
  and a condition edge map E, each pixel counted as matched when the other map has an edge within
  ``tolerance`` pixels (Chebyshev distance)::

      P = |Ê ∩ dilate(E)| / |Ê|,   R = |E ∩ dilate(Ê)| / |E|,   F1 = 2PR / (P + R)

All functions take uint8 images (B, H, W, 3) and {0, 1} maps (B, H, W) as numpy arrays and return
one value per image (numpy), except the accuracy helpers, which return floats.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .. import train as training
from ..data.shapes import COLOURS, SHAPES, STYLES, shapes_dataset, to_pixel_values, world_prompts
from ..settings import cache_dir, quick_mode
from ..zoo.judge import image_features, load_small_model, save_small_model
from .sampling import sample

__all__ = ["StyleClassifier", "style_classifier", "style_accuracy", "prompt_adherence", "object_mask",
           "mask_edges", "mask_iou", "edge_agreement", "score_samples", "CLASSIFIER_FULL",
           "CLASSIFIER_QUICK"]

CLASSIFIER_VERSION = 1
CLASSIFIER_FULL: dict[str, Any] = dict(image_size=16, n_train=12_000, steps=800, batch_size=64, lr=3e-3,
                                       sizes=["medium", "large"], backgrounds=["black"], width=32, seed=0)
CLASSIFIER_QUICK: dict[str, Any] = dict(image_size=16, n_train=800, steps=50, batch_size=64, lr=3e-3,
                                        sizes=["medium", "large"], backgrounds=["black"], width=16, seed=0)


class StyleClassifier(nn.Module):
    """Names the style, shape and colour of a shapes-world image (trained on real renders only)."""

    def __init__(self, styles: Sequence[str] = STYLES, shapes: Sequence[str] = SHAPES,
                 colours: Sequence[str] = tuple(COLOURS), width: int = 32, accuracy: dict | None = None) -> None:
        super().__init__()
        self.styles, self.shapes, self.colours, self.width = list(styles), list(shapes), list(colours), width
        self.accuracy = dict(accuracy or {})  # held-out accuracy on real images, per head
        self.features = image_features(width)  # (B, 3, H, W) -> (B, 2·width)
        self.style_head = nn.Linear(2 * width, len(self.styles))
        self.shape_head = nn.Linear(2 * width, len(self.shapes))
        self.colour_head = nn.Linear(2 * width, len(self.colours))

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """pixel_values (B, 3, H, W) in [-1, 1] -> (style, shape, colour) logits."""
        h = self.features(pixel_values)
        return self.style_head(h), self.shape_head(h), self.colour_head(h)

    @torch.no_grad()
    def predict(self, images: np.ndarray) -> dict[str, list[str]]:
        """uint8 images (B, H, W, 3) -> {"style": [...], "shape": [...], "colour": [...]} names."""
        self.eval()
        st, sh, co = self(to_pixel_values(images))
        return {"style": [self.styles[i] for i in st.argmax(-1)], "shape": [self.shapes[i] for i in sh.argmax(-1)],
                "colour": [self.colours[i] for i in co.argmax(-1)]}

    def save_pretrained(self, directory: str | Path) -> None:
        save_small_model(self, directory, {"styles": self.styles, "shapes": self.shapes, "colours": self.colours,
                                           "width": self.width, "accuracy": self.accuracy})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "StyleClassifier":
        return load_small_model(cls, directory)


def _train_classifier(p: dict[str, Any], progress: bool) -> StyleClassifier:
    torch.manual_seed(p["seed"])
    world = dict(image_size=p["image_size"], styles=STYLES, sizes=p["sizes"], backgrounds=p["backgrounds"], maps=False)
    model = StyleClassifier(width=p["width"])
    train_set = shapes_dataset(p["n_train"], seed=p["seed"] + 40_000, **world).select_columns(
        ["image", "style", "shape", "colour"]).with_format("torch")

    def loss_fn(m, batch):
        st, sh, co = m(to_pixel_values(batch["image"]))
        ce = nn.functional.cross_entropy
        return ce(st, batch["style"]) + ce(sh, batch["shape"]) + ce(co, batch["colour"])

    training.train(model, train_set, loss_fn, steps=p["steps"], batch_size=p["batch_size"], lr=p["lr"],
                   seed=p["seed"], progress=progress)
    test = shapes_dataset(600, seed=p["seed"] + 50_000, **world).with_format("numpy")[:]
    got = model.predict(test["image"].astype(np.uint8))
    names = {"style": STYLES, "shape": SHAPES, "colour": tuple(COLOURS)}
    model.accuracy = {k: float(np.mean([g == names[k][i] for g, i in zip(got[k], test[k])])) for k in names}
    return model.eval()


def style_classifier(quick: bool | None = None, *, progress: bool = False) -> StyleClassifier:
    """The cached :class:`StyleClassifier` (built on first use: ~1 min full, seconds quick).

    ``quick`` defaults to ``SWIFTLITE_QUICK``. The cache folder's name carries a hash of the recipe
    (:data:`CLASSIFIER_FULL` / :data:`CLASSIFIER_QUICK` and a version), and a build is written to a
    temporary folder and renamed into place, so a half-written classifier is never loaded.
    """
    quick = quick_mode(quick)
    p = CLASSIFIER_QUICK if quick else CLASSIFIER_FULL
    blob = json.dumps({"version": CLASSIFIER_VERSION, "quick": quick, "params": p}, sort_keys=True)
    name = f"style-classifier{'-quick' if quick else ''}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"
    target = cache_dir() / "diffusion" / name
    if not (target / "model.safetensors").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        model = _train_classifier(p, progress)
        tmp = Path(tempfile.mkdtemp(prefix=name + ".", dir=target.parent))
        model.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    return StyleClassifier.from_pretrained(target)


def style_accuracy(images: np.ndarray, style: str | Sequence[str], classifier: StyleClassifier | None = None) -> float:
    """Fraction of ``images`` the style classifier assigns to ``style`` (one name, or one per image)."""
    classifier = classifier or style_classifier()
    wanted = [style] * len(images) if isinstance(style, str) else list(style)
    unknown = sorted(set(wanted) - set(classifier.styles))
    if unknown:
        raise ValueError(f"style {unknown} unknown to the classifier; expected one of {classifier.styles}")
    got = classifier.predict(images)["style"]
    return float(np.mean([g == w for g, w in zip(got, wanted)]))


def prompt_adherence(images: np.ndarray, shapes: Sequence[str], colours: Sequence[str], judge: Any) -> dict[str, float]:
    """Share of samples whose shape and colour (named by ``judge``) match the prompt's, per image lists.

    ``judge``: anything with ``predict(images)`` returning ``(shapes, colours)`` (the zoo's
    :class:`~swiftlite.zoo.judge.ShapeColourJudge`, ``load_judge(zoo.path("unet-tiny"))``) or a
    ``{"shape": ..., "colour": ...}`` dict (a :class:`StyleClassifier`).
    """
    if not len(images) == len(shapes) == len(colours):
        raise ValueError(f"prompt_adherence: {len(images)} images but {len(shapes)} shapes and {len(colours)} colours")
    got = judge.predict(images)
    got_shape, got_colour = (got["shape"], got["colour"]) if isinstance(got, dict) else got
    shape_ok = np.array([g == w for g, w in zip(got_shape, shapes)])
    colour_ok = np.array([g == w for g, w in zip(got_colour, colours)])
    return {"prompt_match": float((shape_ok & colour_ok).mean()), "shape_match": float(shape_ok.mean()),
            "colour_match": float(colour_ok.mean())}


def object_mask(images: np.ndarray, threshold: float = 60.0) -> np.ndarray:
    """{0, 1} masks (B, H, W) of the pixels whose colour is farther than ``threshold`` (0..255 units,
    Euclidean over RGB) from the background, taken as the per-image median of the border pixels."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[None]
    border = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)  # (B, 4H-4, 3)
    background = np.median(border, axis=1)[:, None, None, :]  # (B, 1, 1, 3)
    return (np.linalg.norm(x - background, axis=-1) > threshold).astype(np.uint8)


def _shift_max(m: np.ndarray, r: int) -> np.ndarray:
    """Max over the (2r+1)² neighbourhood (binary dilation with a square), zero padded."""
    out = m.copy()
    h, w = m.shape[-2:]
    padded = np.pad(m, [(0, 0)] * (m.ndim - 2) + [(r, r), (r, r)])
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out = np.maximum(out, padded[..., r + dy:r + dy + h, r + dx:r + dx + w])
    return out


def mask_edges(masks: np.ndarray) -> np.ndarray:
    """The boundary of each mask: pixels of the mask with a 4-neighbour outside it (B, H, W) {0, 1}."""
    m = np.asarray(masks).astype(bool)
    padded = np.pad(m, [(0, 0)] * (m.ndim - 2) + [(1, 1), (1, 1)], constant_values=False)
    inner = padded[..., :-2, 1:-1] & padded[..., 2:, 1:-1] & padded[..., 1:-1, :-2] & padded[..., 1:-1, 2:]
    return (m & ~inner).astype(np.uint8)


def mask_iou(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image IoU |P ∩ T| / |P ∪ T| of two {0, 1} mask stacks (B, H, W); 1 where both are empty."""
    p, t = np.asarray(predicted).astype(bool), np.asarray(target).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"mask_iou: shapes differ, {p.shape} vs {t.shape}")
    inter = (p & t).sum(axis=(-2, -1))
    union = (p | t).sum(axis=(-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def edge_agreement(predicted: np.ndarray, target: np.ndarray, tolerance: int = 1) -> np.ndarray:
    """Per-image F1 of two {0, 1} edge stacks (B, H, W), a pixel matching within ``tolerance`` pixels."""
    p, t = np.asarray(predicted).astype(np.uint8), np.asarray(target).astype(np.uint8)
    if p.shape != t.shape:
        raise ValueError(f"edge_agreement: shapes differ, {p.shape} vs {t.shape}")
    if tolerance < 0:
        raise ValueError(f"edge_agreement: tolerance must be >= 0, got {tolerance}")
    n_p, n_t = p.sum(axis=(-2, -1)), t.sum(axis=(-2, -1))
    precision = (p & _shift_max(t, tolerance)).sum(axis=(-2, -1)) / np.maximum(n_p, 1)  # P = |Ê ∩ dilate(E)| / |Ê|
    recall = (t & _shift_max(p, tolerance)).sum(axis=(-2, -1)) / np.maximum(n_t, 1)  # R = |E ∩ dilate(Ê)| / |E|
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return np.where((n_p == 0) & (n_t == 0), 1.0, f1)


def score_samples(pipe: Any, style: str, *, unet: nn.Module | None = None, judge: Any, classifier: StyleClassifier,
                  shapes: Sequence[str], colours: Sequence[str], per_prompt: int = 2, seed: int = 0,
                  **sampling: Any) -> tuple[dict[str, float], np.ndarray]:
    """Sample every (shape, colour) prompt and score: style accuracy (classifier) and prompt
    adherence (judge). ``sampling`` goes to :func:`swiftlite.diffusion.sample` (steps, guidance, a
    ``condition_context``, ...). Returns ``(metrics, images)``."""
    prompts, wanted_shapes, wanted_colours = world_prompts(shapes, colours, per_prompt, seed)
    images = sample(pipe, prompts, unet=unet, seed=seed, **sampling)
    metrics = {"style_accuracy": style_accuracy(images, style, classifier),
               **prompt_adherence(images, wanted_shapes, wanted_colours, judge)}
    return metrics, images
