"""StyleBooth's data loop at tiny scale: style / de-style generators, a usability filter, rounds of pairs.

StyleBooth (arXiv:2404.12154) builds its training pairs without any paired data: per-style generators
stylize plain images and de-stylize style images, a usability filter keeps the pairs whose content survived
and whose style was reached, an editor trained on them generates the next round's pairs, and so on
("iterative style-destyle tuning and editing and usability filtering", the abstract). The paper publishes
neither this code nor its filter; **this file is our reading** of that description::

    round 1:  (x_plain, G_s(x_plain))        stylize: real plain render → style-s generator (img2img)
              (G_plain(x_s), x_s)            de-style: real style-s render → plain generator (img2img)
    round r:  (x_plain, Edit_{r−1}(x_plain, s))   the previous round's editor stylizes; de-style as above
    keep(src, tgt, s) = content kept ∧ style reached
        content kept:  IoU(box(mask(src)), box(mask(tgt))) ≥ iou_min  ∧  colour(src) = colour(tgt)
        style reached: style(tgt) = s  ∧  style(src) = plain                (the judge's style head)

G_s is sd-tiny with one LoRA adapter per style (``Swift.prepare_model``, ``set_active_adapters``) trained on
renders of that style, run through diffusers' ``StableDiffusionImg2ImgPipeline`` (SDEdit: noise the source
to ``strength``, denoise with the style's caption). The mask is :func:`~swiftlite.diffusion.object_mask`
(pixels far from the border colour); its bounding box, not the mask, is compared because an outlined object
covers a ring where the plain one is filled. The judge is sd-tiny's :class:`~swiftlite.zoo.judge.SceneJudge`
(trained on real renders only). Test sources are real renders whose ground-truth restyling is known
(:func:`render_pairs`), so :func:`edit_scores` can also say how far an edit is from the truth.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..data.scenes import render_scene, scene_caption
from ..data.shapes import sample_content
from ..tuners.lora import LoRAConfig
from ..api import Swift
from .. import train as training
from .metrics import object_mask
from .stylebooth import STYLEBOOTH_STYLES, StyleBooth, StyleBoothConfig, StyleBoothLoss, stylebooth_edit
from .training import TextToImageLoss

__all__ = ["render_pairs", "mask_box_iou", "usability_filter", "edit_scores", "style_generators", "generator_img2img",
           "train_stylebooth", "style_destyle_loop", "pooled", "LoopRound", "SD_TINY_WORLD"]

SD_TINY_WORLD: dict[str, list[str]] = dict(shapes=["circle", "square", "triangle", "cross"],
                                           colours=["red", "green", "blue", "yellow"], sizes=["medium", "large"],
                                           backgrounds=["black", "white"])


def render_pairs(n: int, seed: int, styles: Sequence[str] = STYLEBOOTH_STYLES) -> dict[str, np.ndarray]:
    """``n`` one-object contents drawn plain and in a random style of ``styles``: ``plain``, ``styled``
    (N, 32, 32, 3) uint8, ``style`` (N,) names, ``caption_plain`` / ``caption_styled``."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {k: [] for k in ("plain", "styled", "style", "caption_plain", "caption_styled")}
    for _ in range(n):
        content = sample_content(rng, 32, **SD_TINY_WORLD)
        style = styles[int(rng.integers(len(styles)))]
        out["plain"].append(render_scene([(content, "plain")], 32, rng)["image"])
        out["styled"].append(render_scene([(content, style)], 32, rng)["image"])
        out["style"].append(style)
        out["caption_plain"].append(scene_caption([(content, "plain")], content.background))
        out["caption_styled"].append(scene_caption([(content, style)], content.background))
    return {k: np.asarray(v) for k, v in out.items()}


def mask_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image IoU of the bounding boxes of the object masks of uint8 images ``a`` and ``b`` (B, H, W, 3)."""
    def boxes(images):
        masks = object_mask(images).astype(bool)  # (B, H, W)
        out = np.zeros((len(masks), 4))
        for i, m in enumerate(masks):
            ys, xs = np.nonzero(m)
            out[i] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) if len(ys) else (0, 0, 0, 0)
        return out

    p, q = boxes(a), boxes(b)
    inter = (np.clip(np.minimum(p[:, 2], q[:, 2]) - np.maximum(p[:, 0], q[:, 0]), 0, None)
             * np.clip(np.minimum(p[:, 3], q[:, 3]) - np.maximum(p[:, 1], q[:, 1]), 0, None))
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])
    union = area(p) + area(q) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def usability_filter(sources: np.ndarray, targets: np.ndarray, styles: Sequence[str], judge: Any, *,
                     iou_min: float = 0.6) -> dict[str, np.ndarray]:
    """Which (source, target, style) pairs to keep; returns ``box_iou``, ``content_kept``, ``style_reached``
    and ``keep`` (all (N,)). See the module docstring for the rule."""
    if not len(sources) == len(targets) == len(styles):
        raise ValueError(f"usability_filter: {len(sources)} sources, {len(targets)} targets and {len(styles)} styles; "
                         f"give one target and one style per source")
    src, tgt = judge.predict(np.asarray(sources)), judge.predict(np.asarray(targets))
    iou = mask_box_iou(sources, targets)
    content = (iou >= iou_min) & (np.array(src["colour"]) == np.array(tgt["colour"]))
    style = (np.array(tgt["style"]) == np.array(list(styles))) & (np.array(src["style"]) == "plain")
    return {"box_iou": iou, "content_kept": content, "style_reached": style, "keep": content & style}


def edit_scores(sources: np.ndarray, edits: np.ndarray, styles: Sequence[str], judge: Any,
                truth: np.ndarray | None = None, iou_min: float = 0.6) -> dict[str, float]:
    """How good edits are: ``style_accuracy`` (the judge names the wanted style), ``content_kept`` (box IoU ≥
    ``iou_min`` and the same colour as the source), ``success`` (both), ``box_iou`` (mean) and, with the
    ground-truth restyling ``truth``, ``pixel_error`` (mean |edit − truth| on 0..255)."""
    f = usability_filter(sources, edits, styles, judge, iou_min=iou_min)
    got = judge.predict(np.asarray(edits))["style"]
    style_ok = np.array([g == s for g, s in zip(got, styles)])
    out = {"style_accuracy": float(style_ok.mean()), "content_kept": float(f["content_kept"].mean()),
           "success": float((style_ok & f["content_kept"]).mean()), "box_iou": float(f["box_iou"].mean())}
    if truth is not None:
        out["pixel_error"] = float(np.abs(edits.astype(np.float32) - truth.astype(np.float32)).mean())
    return out


# ---- generators: sd-tiny + one LoRA adapter per style ----------------------------------------------------------
def style_generators(pipe: Any, *, steps: int, n_train: int = 512, rank: int = 8, lr: float = 3e-3,
                     batch_size: int = 32, seed: int = 0, progress: bool = True):
    """A copy of ``pipe.unet`` with one LoRA adapter per scene style (``plain`` and the edit styles), each
    trained ``steps`` steps on renders of its style; returns the ``SwiftModel``."""
    import datasets

    from ..zoo.sd import encode_latents  # the zoo's latent encoder (posterior mean × scaling factor)

    names = ("plain", *STYLEBOOTH_STYLES)
    config = LoRAConfig(r=rank, lora_alpha=2 * rank, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    model = Swift.prepare_model(copy.deepcopy(pipe.unet), {s: copy.deepcopy(config) for s in names})
    empty = pipe.tokenizer("", padding="max_length", max_length=pipe.tokenizer.model_max_length)["input_ids"]
    for k, style in enumerate(names):
        data = render_pairs(n_train, seed + 100 + k, styles=STYLEBOOTH_STYLES if style == "plain" else (style,))
        images, captions = ((data["plain"], data["caption_plain"]) if style == "plain"
                            else (data["styled"], data["caption_styled"]))
        ids = pipe.tokenizer(list(captions), padding="max_length", max_length=pipe.tokenizer.model_max_length,
                             truncation=True)["input_ids"]
        train_set = datasets.Dataset.from_dict({"latents": encode_latents(pipe.vae, images).numpy(),
                                                "input_ids": ids}).with_format("torch")
        model.set_active_adapters([style])
        loss = TextToImageLoss(pipe.scheduler, text_encoder=pipe.text_encoder, p_uncond=0.1, empty_ids=empty)
        training.train(model, train_set, loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress)
    return model.eval()


@torch.no_grad()
def generator_img2img(pipe: Any, generators: Any, style: str, images: np.ndarray, captions: Sequence[str], *,
                      strength: float = 0.6, steps: int = 20, guidance_scale: float = 3.0, seed: int = 0) -> np.ndarray:
    """SDEdit with style ``style``'s adapter: diffusers' ``StableDiffusionImg2ImgPipeline`` from ``images``."""
    from diffusers import StableDiffusionImg2ImgPipeline

    generators.set_active_adapters([style])
    i2i = StableDiffusionImg2ImgPipeline(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
                                         unet=generators.model, scheduler=pipe.scheduler, safety_checker=None,
                                         feature_extractor=None, requires_safety_checker=False)
    i2i.set_progress_bar_config(disable=True)
    out = i2i(list(captions), image=torch.as_tensor(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0,
              strength=strength, num_inference_steps=steps, guidance_scale=guidance_scale, output_type="np",
              generator=torch.Generator().manual_seed(seed))
    return (np.clip(out.images, 0, 1) * 255).round().astype(np.uint8)


# ---- the editor and the loop -----------------------------------------------------------------------------------
def train_stylebooth(pipe: Any, sources: np.ndarray, targets: np.ndarray, styles: Sequence[str], *, steps: int,
                     config: StyleBoothConfig | None = None, lr: float = 5e-4, batch_size: int = 32,
                     n_exemplars: int = 64, seed: int = 0, progress: bool = True) -> tuple[StyleBooth, list[float]]:
    """A :class:`StyleBooth` built from ``pipe`` and trained ``steps`` steps on the pairs; exemplars are real
    renders of each style (other contents than the pairs'). Returns the editor and its loss history."""
    import datasets

    if len(sources) == 0:
        raise ValueError("train_stylebooth: no pairs to train on (did the filter drop every pair? lower iou_min)")
    model = StyleBooth.from_text_to_image(pipe, config, seed=seed)
    bank = {s: model.exemplar_features(render_pairs(n_exemplars, seed + 7_000 + k, styles=(s,))["styled"])
            for k, s in enumerate(STYLEBOOTH_STYLES)}
    if model.config.align_exemplars:
        model.align_exemplars(bank)  # W starts at the map exemplar → its style word's context row
    data = datasets.Dataset.from_dict({
        "source_latents": model.source_latents(sources).numpy(), "target_latents": model.target_latents(targets).numpy(),
        "style": [STYLEBOOTH_STYLES.index(s) for s in styles]}).with_format("torch")
    history = training.train(model, data, StyleBoothLoss(model, bank, seed=seed), steps=steps, batch_size=batch_size,
                             lr=lr, warmup_steps=max(1, steps // 15), seed=seed, progress=progress)
    return model.eval(), history.loss


@dataclass
class LoopRound:
    """One round of the loop: every generated pair, where it came from, and the filter's verdict."""
    sources: np.ndarray
    targets: np.ndarray
    styles: list[str]
    direction: list[str]  # "stylize" or "de-style"
    verdict: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def keep(self) -> np.ndarray:
        return self.verdict["keep"]

    def kept_share(self, direction: str | None = None) -> float:
        rows = np.ones(len(self.styles), bool) if direction is None else np.array(self.direction) == direction
        return float(self.keep[rows].mean())


def style_destyle_loop(pipe: Any, judge: Any, generators: Any, *, rounds: int, n_per_style: int, editor_steps: int,
                       iou_min: float = 0.6, strength: float = 0.6, steps: int = 20, s_txt: float = 3.0, seed: int = 0,
                       progress: bool = True, log: Callable[[str], None] = print) -> list[LoopRound]:
    """``rounds`` rounds of pairs (module docstring). Round 1 stylizes with the generators; each later round
    stylizes with an editor trained ``editor_steps`` on every pair kept so far. De-styling always uses the
    plain generator. Each round draws new renders (``n_per_style`` per style and direction); the editor samples
    with text scale ``s_txt``."""
    out: list[LoopRound] = []
    editor = None
    for r in range(rounds):
        src, tgt, sty, way = [], [], [], []
        for k, style in enumerate(STYLEBOOTH_STYLES):
            base = seed + 1_000 * (r + 1) + 10 * k
            fresh = render_pairs(n_per_style, base, styles=(style,))  # stylize these plain renders
            if editor is None:
                made = generator_img2img(pipe, generators, style, fresh["plain"], fresh["caption_styled"],
                                         strength=strength, steps=steps, seed=base)
            else:
                made = stylebooth_edit(editor, fresh["plain"], style, s_txt=s_txt, steps=steps, seed=base)
            src.append(fresh["plain"])
            tgt.append(made)
            sty += [style] * n_per_style
            way += ["stylize"] * n_per_style
            real = render_pairs(n_per_style, base + 1, styles=(style,))  # de-style these style renders
            plain = generator_img2img(pipe, generators, "plain", real["styled"], real["caption_plain"],
                                      strength=strength, steps=steps, seed=base + 1)
            src.append(plain)
            tgt.append(real["styled"])
            sty += [style] * n_per_style
            way += ["de-style"] * n_per_style
        rnd = LoopRound(np.concatenate(src), np.concatenate(tgt), sty, way)
        rnd.verdict = usability_filter(rnd.sources, rnd.targets, rnd.styles, judge, iou_min=iou_min)
        out.append(rnd)
        log(f"round {r + 1}: kept {int(rnd.keep.sum())} of {len(rnd.keep)} pairs "
            f"(stylize {rnd.kept_share('stylize'):.0%}, de-style {rnd.kept_share('de-style'):.0%})")
        kept = pooled(out, filtered=True)
        if r + 1 < rounds and len(kept[0]) == 0:
            log(f"round {r + 1}: no pair kept yet, so round {r + 2} stylizes with the generators again")
        elif r + 1 < rounds:
            editor, _ = train_stylebooth(pipe, *kept, steps=editor_steps, seed=seed, progress=progress)
    return out


def pooled(rounds: Sequence[LoopRound], *, filtered: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(sources, targets, styles) of every round, only the kept pairs when ``filtered``."""
    src, tgt, sty = [np.zeros((0, 32, 32, 3), np.uint8)], [np.zeros((0, 32, 32, 3), np.uint8)], []
    for rnd in rounds:
        rows = rnd.keep if filtered else np.ones(len(rnd.styles), bool)
        src.append(rnd.sources[rows])
        tgt.append(rnd.targets[rows])
        sty += [s for s, k in zip(rnd.styles, rows) if k]
    return np.concatenate(src), np.concatenate(tgt), sty
