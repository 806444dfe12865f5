"""StyleBooth: style editing from a text or an exemplar instruction, on sd-tiny's 8-channel U-Net.

Han, Mao, Jiang, Pan & Zhang, "StyleBooth: Image Style Editing with Multimodal Instruction",
arXiv:2404.12154. An InstructPix2Pix-style editor (arXiv:2211.09800): the U-Net reads the noisy latent of
the target and the latent of the source side by side, and an instruction "Let this image be in the style of
<style>" (or of ``<image>``, an exemplar) in its cross-attention context::

    u_t = [z_t ; E(x_src)]                                      8 input channels (4 + 4, new ones zero at init)
    c   = τ(instruction)  with the <image> token's row ← W · z(φ(x_exemplar)) + b   (W: the trainable matrix)
    L   = ‖v_θ(u_t, t, c) − v‖²                                  (sd-tiny predicts v; SD 1.5 would predict ε)

Condition dropout in training (so that one network gives the three predictions below): the instruction is
replaced by the empty prompt with probability ``p_zero`` and the source latent by zeros with probability
``i_zero``, independently, which yields four cases: both kept, text dropped, image dropped, both dropped.

Sampling with two guidance scales (s_img on the source image, s_txt on the instruction)::

    ε̃ = ε_u + s_img (ε_img − ε_u) + s_txt (ε_full − ε_img)
    ε  = φ · ε̃ · σ(ε_full) / σ(ε̃) + (1 − φ) · ε̃          guide rescale φ (Lin et al., arXiv:2305.08891)

with ε_u = ε_θ(z_t, 0, ∅), ε_img = ε_θ(z_t, E(x_src), ∅), ε_full = ε_θ(z_t, E(x_src), c). With s_img = s_txt =
1 the sum telescopes to ε_full. Defaults s_img 1.5, s_txt 7.5, φ 0.5 are those of Scepter's StyleBooth
inference (``stylebooth_inference.py``); the paper's Fig. 1 shows the three tasks below.

What is public and what is our reading:

* public (the paper and Scepter's ``ldm_edit.py`` / ``diffusion.py``): the 8-channel U-Net, the condition
  dropout (``p_zero``, ``I_ZERO``), the templated instruction, the dual guidance with rescale;
* **our reading** (the paper describes it, no code is public): the exemplar path. The project page says text
  and exemplar are mapped "into a same hidden space through a trainable matrix"; here the exemplar encoder
  φ is sd-tiny's own frozen VAE encoder (its mid-block features, mean and standard deviation over space:
  texture statistics), standardised as z(φ) = (φ − μ) / σ with the exemplar bank's statistics, W one
  ``nn.Linear`` into the text encoder's output width, and its token replaces the ``<image>`` placeholder's
  row of the context. "A same hidden space" is taken literally at the start: :meth:`StyleBooth.align_exemplars`
  sets W, b to the ridge-regression map that sends each style's exemplars to the context row of that style's
  word (mean over the templates), so an exemplar instruction starts where the word instruction is, and
  training tunes both. Without it a random W must learn the style from a few hundred steps and exemplar
  editing stays near chance (``StyleBoothConfig.align_exemplars=False`` shows it). Composition of two
  styles: the weighted sum Σ_k w_k · (W z(φ(x_k)) + b) in that row (the paper's "scale weights");
* **our reading**: the style/de-style data loop and its usability filter (``stylebooth_data.py``).

The sampler is our own loop because diffusers' ``StableDiffusionInstructPix2PixPipeline`` has no guide
rescale; with φ = 0 it is that pipeline step for step (``tests/test_stylebooth.py`` checks equality), and
:meth:`StyleBooth.pipeline` returns the pipeline itself (exemplar contexts go in as ``prompt_embeds``).
Like that pipeline, the source latent is the *unscaled* posterior mode E(x_src) (the target latent z₀ is
scaled by ``vae.config.scaling_factor``, as in text-to-image training).

Differences from the paper: 32-px shapes-world scenes and three styles (outline, stripes, dots) instead of
23 artistic styles; instruction words are new tokens of sd-tiny's tokenizer (its vocabulary held only the
scene words), their embeddings trained with the editor; the text encoder is trained with the U-Net (the
paper keeps CLIP's text encoder frozen); v-prediction; our own 16 short templates.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data.scenes import STYLE_WORDS
from ..data.shapes import to_pixel_values, to_uint8_images
from .training import diffusion_target
from .widen import EDIT_CHANNELS, widen_conv_in

__all__ = ["STYLEBOOTH_STYLES", "TEMPLATES", "IMAGE_TOKEN", "StyleBoothConfig", "StyleBooth", "StyleBoothLoss",
           "condition_dropout", "dual_guidance", "stylebooth_edit", "instruction"]

STYLEBOOTH_STYLES: tuple[str, ...] = ("outline", "stripes", "dots")  # edit targets; "plain" is the content
IMAGE_TOKEN = "<image>"
TEMPLATES: tuple[str, ...] = (  # "{}" is a style word ("striped") or <image>
    "let this image be in the style of {}", "make this image {}", "turn it {}", "render this picture {}",
    "restyle this image as {}", "change the style to {}", "apply the {} style", "give it a {} look",
    "redraw this {}", "paint this image {}", "in the style of {}", "transfer the {} style to this image",
    "make it look {}", "convert this picture to {}", "style this image {}", "show this image {}")


def instruction(style: str | None, template: int = 0) -> str:
    """Template ``template`` filled with the style's word ("striped"), or with ``<image>`` when ``style`` is None."""
    if style is not None and style not in STYLEBOOTH_STYLES:
        raise ValueError(f"style={style!r}: StyleBooth edits into one of {STYLEBOOTH_STYLES}")
    return TEMPLATES[template % len(TEMPLATES)].format(IMAGE_TOKEN if style is None else STYLE_WORDS[style])


@dataclass
class StyleBoothConfig:
    p_zero: float = 0.1  # P(instruction → empty prompt) in training (Scepter: p_zero)
    i_zero: float = 0.1  # P(source latent → 0) in training (Scepter: I_ZERO)
    p_exemplar: float = 0.4  # P(style word → <image> + an exemplar of that style), our reading
    s_img: float = 1.5  # image guidance (Scepter's default)
    s_txt: float = 7.5  # text guidance (Scepter's default)
    guide_rescale: float = 0.5  # φ (Scepter's default)
    align_exemplars: bool = True  # start W at the map exemplar → its style word's context row (our reading)

    def __post_init__(self) -> None:
        for name in ("p_zero", "i_zero", "p_exemplar", "guide_rescale"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"StyleBoothConfig.{name}: must be in [0, 1], got {value}")


def condition_dropout(ids: torch.Tensor, source: torch.Tensor, empty_ids: torch.Tensor, p_zero: float, i_zero: float,
                      generator: torch.Generator | None = None):
    """Drop the instruction (→ the empty prompt's ids) with probability ``p_zero`` and zero the source latent
    with probability ``i_zero``, independently per sample. Returns ``(ids, source, text_dropped, image_dropped)``."""
    b = ids.shape[0]
    text_dropped = torch.rand(b, generator=generator) < p_zero  # (B,)
    image_dropped = torch.rand(b, generator=generator) < i_zero  # (B,)
    ids = torch.where(text_dropped[:, None], empty_ids.to(ids)[None], ids)  # (B, L)
    source = source * (~image_dropped).to(source.dtype)[:, None, None, None]  # (B, 4, h, w)
    return ids, source, text_dropped, image_dropped


def dual_guidance(eps_uncond: torch.Tensor, eps_image: torch.Tensor, eps_full: torch.Tensor, s_img: float,
                  s_txt: float, guide_rescale: float = 0.0) -> torch.Tensor:
    """StyleBooth's (and InstructPix2Pix's) two-scale classifier-free guidance, then guide rescale φ."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

    # ε̃ = ε_u + s_img (ε_img − ε_u) + s_txt (ε_full − ε_img)
    eps = eps_uncond + s_img * (eps_image - eps_uncond) + s_txt * (eps_full - eps_image)
    if guide_rescale > 0:
        # ε = φ · ε̃ · σ(ε_full) / σ(ε̃) + (1 − φ) · ε̃      (diffusers' rescale_noise_cfg)
        eps = rescale_noise_cfg(eps, eps_full, guidance_rescale=guide_rescale)
    return eps


class StyleBooth(nn.Module):
    """The editor: 8-channel U-Net, text encoder + tokenizer with the instruction words, frozen VAE, the
    exemplar matrix W. Build it from a text-to-image pipeline with :meth:`from_text_to_image`."""

    def __init__(self, unet: nn.Module, text_encoder: nn.Module, tokenizer: Any, vae: nn.Module, scheduler: Any,
                 projection: nn.Linear, config: StyleBoothConfig | None = None) -> None:
        super().__init__()
        if unet.config.in_channels != EDIT_CHANNELS:
            raise ValueError(f"StyleBooth: the U-Net must read {EDIT_CHANNELS} channels (noisy ⊕ source latent), "
                             f"got {unet.config.in_channels}; widen it with swiftlite.diffusion.widen_conv_in")
        self.unet, self.text_encoder, self.vae, self.projection = unet, text_encoder, vae, projection
        self.tokenizer, self.scheduler = tokenizer, scheduler
        self.config = config or StyleBoothConfig()
        self.vae.requires_grad_(False)
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        # z(φ) = (φ − μ) / σ; μ = 0, σ = 1 until align_exemplars sees a bank
        self.register_buffer("exemplar_mean", torch.zeros(projection.in_features))
        self.register_buffer("exemplar_scale", torch.ones(projection.in_features))

    @classmethod
    def from_text_to_image(cls, pipe: Any, config: StyleBoothConfig | None = None, seed: int = 0) -> "StyleBooth":
        """Copies of ``pipe``'s parts: U-Net widened to 8 channels (new weights zero), tokenizer with the
        template words and ``<image>`` added as whole tokens, text encoder with rows for them; W random."""
        from tokenizers import AddedToken

        torch.manual_seed(seed)
        tokenizer, text_encoder = copy.deepcopy(pipe.tokenizer), copy.deepcopy(pipe.text_encoder)
        vocab = tokenizer.get_vocab()
        words = sorted({w for t in TEMPLATES for w in t.replace("{}", "").split()} - {w[:-4] for w in vocab if w.endswith("</w>")})
        # whole words only (single_word): "to" must not split "top"
        tokenizer.add_tokens([AddedToken(w, single_word=True) for w in words] + [AddedToken(IMAGE_TOKEN)])
        text_encoder.resize_token_embeddings(len(tokenizer))
        unet = widen_conv_in(pipe.unet, EDIT_CHANNELS)  # a copy
        width = exemplar_features(pipe.vae, torch.zeros(1, 3, 8, 8)).shape[-1]
        projection = nn.Linear(width, text_encoder.config.hidden_size)  # W: exemplar → text-embedding space
        return cls(unet, text_encoder, tokenizer, pipe.vae, copy.deepcopy(pipe.scheduler), projection, config)

    # ---- conditions -------------------------------------------------------------------------------------------
    def token_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, L) ids padded to the tokenizer's length."""
        return torch.tensor(self.tokenizer(list(texts), padding="max_length", truncation=True,
                                           max_length=self.tokenizer.model_max_length)["input_ids"])

    def encode(self, ids: torch.Tensor, exemplar: torch.Tensor | None = None,
               weights: torch.Tensor | Sequence[float] | None = None) -> torch.Tensor:
        """Cross-attention context (B, L, D); where ``ids`` hold ``<image>`` the row becomes Σ_k w_k · W φ_k.

        ``exemplar``: features φ (B, F) or (B, K, F) for K exemplars mixed with ``weights`` (K,) or (B, K)."""
        ctx = self.text_encoder(input_ids=ids).last_hidden_state  # (B, L, D)
        if exemplar is None:
            return ctx
        phi = exemplar if exemplar.dim() == 3 else exemplar[:, None]  # (B, K, F)
        w = torch.ones(phi.shape[:2]) if weights is None else torch.as_tensor(weights, dtype=phi.dtype)
        w = w.expand(phi.shape[:2]).to(phi)  # (B, K)
        # token = Σ_k w_k · (W z(φ_k) + b)
        token = (w[..., None] * self.projection(self.standardise(phi))).sum(1)  # (B, D)
        at_image = (ids == self.image_token_id)[..., None]  # (B, L, 1)
        return torch.where(at_image, token[:, None, :].to(ctx.dtype), ctx)

    def standardise(self, phi: torch.Tensor) -> torch.Tensor:
        """z(φ) = (φ − μ) / σ, with the statistics :meth:`align_exemplars` took from the exemplar bank."""
        return (phi - self.exemplar_mean) / self.exemplar_scale

    def word_rows(self) -> dict[str, torch.Tensor]:
        """Per style, the context row τ(instruction)[i] at the style word (its last token), one per template:
        {style: (n_templates, D)}. The ``<image>`` placeholder sits where the word starts."""
        rows: dict[str, list[torch.Tensor]] = {s: [] for s in STYLEBOOTH_STYLES}
        for k in range(len(TEMPLATES)):
            image_ids = self.tokenizer(instruction(None, k))["input_ids"]
            at = image_ids.index(self.image_token_id)
            for s in STYLEBOOTH_STYLES:
                text = instruction(s, k)
                last = at + len(self.tokenizer(text)["input_ids"]) - len(image_ids)  # the word's last token
                rows[s].append(self.text_encoder(input_ids=self.token_ids([text])).last_hidden_state[0, last])
        return {s: torch.stack(r) for s, r in rows.items()}

    @torch.no_grad()
    def align_exemplars(self, bank: dict[str, torch.Tensor], ridge: float = 1.0) -> float:
        """Standardise φ with ``bank``'s statistics and set W, b to the ridge regression

            W, b = argmin Σ_s Σ_{x ∈ bank[s]} ‖W z(φ(x)) + b − t_s‖² + ridge · ‖W‖²,   t_s = mean of :meth:`word_rows`

        so that an exemplar of style s lands on the context row of the word for s. ``bank``: {style: φ (N_s, F)}
        for every style of :data:`STYLEBOOTH_STYLES`. Returns the mean cosine between W z + b and t_s."""
        missing = [s for s in STYLEBOOTH_STYLES if s not in bank or len(bank[s]) == 0]
        if missing:
            raise ValueError(f"align_exemplars: bank has no exemplars of {missing}; give φ of real images of every "
                             f"style in {STYLEBOOTH_STYLES} (StyleBooth.exemplar_features(images))")
        phi = torch.cat([bank[s] for s in STYLEBOOTH_STYLES]).float()  # (N, F)
        self.exemplar_mean.copy_(phi.mean(0))
        self.exemplar_scale.copy_(phi.std(0) + 1e-5)
        words = {s: r.mean(0) for s, r in self.word_rows().items()}  # t_s (D,)
        z = self.standardise(phi)  # (N, F), mean 0
        t = torch.cat([words[s].expand(len(bank[s]), -1) for s in STYLEBOOTH_STYLES])  # (N, D)
        t_mean = t.mean(0)
        # ridge: W = (ZᵀZ + λI)⁻¹ Zᵀ (T − T̄);  b = T̄  (Z has mean 0)
        w = torch.linalg.solve(z.T @ z + ridge * torch.eye(z.shape[1]), z.T @ (t - t_mean))  # (F, D)
        self.projection.weight.copy_(w.T)
        self.projection.bias.copy_(t_mean)
        return float(nn.functional.cosine_similarity(self.projection(z), t, dim=-1).mean())

    @torch.no_grad()
    def source_latents(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 images (B, H, W, 3) -> unscaled posterior modes E(x) (B, 4, h, w), as diffusers' pipeline."""
        return self.vae.encode(to_pixel_values(images)).latent_dist.mode()

    @torch.no_grad()
    def target_latents(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 images -> scaled latents z₀ = s · E(x) (what the denoiser is trained on)."""
        return self.source_latents(images) * self.vae.config.scaling_factor

    @torch.no_grad()
    def exemplar_features(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 exemplars (B, H, W, 3) -> φ (B, F) from the frozen VAE encoder."""
        return exemplar_features(self.vae, to_pixel_values(images))

    def pipeline(self) -> Any:
        """diffusers' ``StableDiffusionInstructPix2PixPipeline`` over these parts (no guide rescale there)."""
        from diffusers import StableDiffusionInstructPix2PixPipeline

        pipe = StableDiffusionInstructPix2PixPipeline(
            vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer, unet=self.unet,
            scheduler=self.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    # ---- save / load ------------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        """An InstructPix2Pix pipeline folder (``unet/ vae/ text_encoder/ tokenizer/ scheduler/``) plus
        ``stylebooth/`` (W as safetensors and the config)."""
        from safetensors.torch import save_file

        d = Path(directory)
        self.pipeline().save_pretrained(d)
        (d / "stylebooth").mkdir(parents=True, exist_ok=True)
        save_file({**{k: v.contiguous() for k, v in self.projection.state_dict().items()},
                   "exemplar_mean": self.exemplar_mean, "exemplar_scale": self.exemplar_scale},
                  str(d / "stylebooth" / "projection.safetensors"))
        (d / "stylebooth" / "config.json").write_text(json.dumps(
            {**asdict(self.config), "in_features": self.projection.in_features,
             "out_features": self.projection.out_features}, indent=2))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "StyleBooth":
        from diffusers import StableDiffusionInstructPix2PixPipeline
        from safetensors.torch import load_file

        d = Path(directory)
        if not (d / "stylebooth" / "config.json").is_file():
            raise FileNotFoundError(f"StyleBooth.from_pretrained: {d} has no stylebooth/config.json; "
                                    f"save the editor with StyleBooth.save_pretrained(directory)")
        pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(d, safety_checker=None, feature_extractor=None,
                                                                      requires_safety_checker=False)
        saved = json.loads((d / "stylebooth" / "config.json").read_text())
        projection = nn.Linear(saved.pop("in_features"), saved.pop("out_features"))
        tensors = load_file(str(d / "stylebooth" / "projection.safetensors"))
        mean, scale = tensors.pop("exemplar_mean", None), tensors.pop("exemplar_scale", None)
        projection.load_state_dict(tensors)
        model = cls(pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.vae, pipe.scheduler, projection,
                    StyleBoothConfig(**saved))
        if mean is not None:
            model.exemplar_mean.copy_(mean)
            model.exemplar_scale.copy_(scale)
        return model.eval()


def exemplar_features(vae: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """φ(x): the VAE encoder's mid-block features (B, C, h, w), mean and standard deviation over space (B, 2C)."""
    enc = vae.encoder
    h = enc.conv_in(pixels)
    for block in enc.down_blocks:
        h = block(h)
    h = enc.mid_block(h)  # (B, C, h, w)
    return torch.cat([h.mean((2, 3)), h.std((2, 3))], dim=1)  # (B, 2C): first and second moments


class StyleBoothLoss:
    """``loss_fn(model, batch)`` for :func:`swiftlite.train.train`: the editing loss with templated
    instructions, exemplar instructions and condition dropout.

    ``batch``: ``source_latents`` (unscaled, B×4×h×w), ``target_latents`` (scaled), ``style`` (index into
    :data:`STYLEBOOTH_STYLES`). ``exemplar_bank``: per style, φ of real images of that style (other content),
    from which an exemplar is drawn when the instruction uses ``<image>``."""

    def __init__(self, model: StyleBooth, exemplar_bank: dict[str, torch.Tensor] | None = None, seed: int = 0) -> None:
        cfg = model.config
        self.cfg, self.scheduler = cfg, model.scheduler
        self.text_ids = torch.stack([model.token_ids([instruction(s, k) for s in STYLEBOOTH_STYLES])
                                     for k in range(len(TEMPLATES))])  # (n_templates, n_styles, L)
        self.image_ids = model.token_ids([instruction(None, k) for k in range(len(TEMPLATES))])  # (n_templates, L)
        self.empty_ids = model.token_ids([""])[0]
        if cfg.p_exemplar > 0 and not exemplar_bank:
            raise ValueError("StyleBoothLoss.exemplar_bank: needed when config.p_exemplar > 0 (φ of real images per "
                             "style, StyleBooth.exemplar_features(images)); or set p_exemplar=0")
        self.bank = [exemplar_bank[s] for s in STYLEBOOTH_STYLES] if exemplar_bank else None
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, model: StyleBooth, batch: Any) -> torch.Tensor:
        g = self.generator
        style = torch.as_tensor(batch["style"]).long()  # (B,)
        x0 = torch.as_tensor(batch["target_latents"]).float()  # (B, 4, h, w) scaled
        src = torch.as_tensor(batch["source_latents"]).float()  # (B, 4, h, w) unscaled
        b = style.shape[0]
        template = torch.randint(len(TEMPLATES), (b,), generator=g)
        ids = self.text_ids[template, style]  # (B, L)
        phi = None
        if self.bank is not None:
            use_image = torch.rand(b, generator=g) < self.cfg.p_exemplar
            ids = torch.where(use_image[:, None], self.image_ids[template], ids)
            phi = torch.stack([self.bank[s][torch.randint(len(self.bank[s]), (1,), generator=g)[0]] for s in style.tolist()])
        ids, src, _, _ = condition_dropout(ids, src, self.empty_ids, self.cfg.p_zero, self.cfg.i_zero, g)
        ctx = model.encode(ids, phi)  # (B, L, D)
        noise = torch.randn(x0.shape, generator=g)  # ε
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), generator=g)
        z_t = self.scheduler.add_noise(x0, noise, t)  # √ᾱ_t z₀ + √(1−ᾱ_t) ε
        # u_t = [z_t ; E(x_src)]
        pred = model.unet(torch.cat([z_t, src], dim=1), t, encoder_hidden_states=ctx).sample
        return nn.functional.mse_loss(pred, diffusion_target(self.scheduler, x0, noise, t))


@torch.no_grad()
def stylebooth_edit(model: StyleBooth, images: np.ndarray, styles: str | Sequence[str] | None = None, *,
                    exemplars: np.ndarray | None = None, weights: Sequence[float] | None = None,
                    s_img: float | None = None, s_txt: float | None = None, guide_rescale: float | None = None,
                    steps: int = 20, seed: int = 0, template: int = 0, batch_size: int = 64,
                    return_latents: bool = False) -> np.ndarray | torch.Tensor:
    """Edit uint8 ``images`` (B, H, W, 3) into ``styles`` (text instruction), or into the style of
    ``exemplars`` ((B, H, W, 3), or (B, K, H, W, 3) mixed with ``weights`` (K,)): three U-Net predictions per
    step combined by :func:`dual_guidance`. Scales default to ``model.config``. Returns uint8 images."""
    from diffusers import DDIMScheduler
    from diffusers.utils.torch_utils import randn_tensor

    cfg = model.config
    s_img = cfg.s_img if s_img is None else s_img
    s_txt = cfg.s_txt if s_txt is None else s_txt
    guide_rescale = cfg.guide_rescale if guide_rescale is None else guide_rescale
    n = len(images)
    if (styles is None) == (exemplars is None):
        raise ValueError("stylebooth_edit: give styles= (text-based editing) or exemplars= (exemplar-based), not both")
    if exemplars is not None:
        ex = np.asarray(exemplars)
        ex = ex[:, None] if ex.ndim == 4 else ex  # (B, K, H, W, 3)
        phi = model.exemplar_features(ex.reshape(-1, *ex.shape[2:])).reshape(n, ex.shape[1], -1)  # (B, K, F)
        texts = [instruction(None, template)] * n
    else:
        styles = [styles] * n if isinstance(styles, str) else list(styles)
        phi, texts = None, [instruction(s, template) for s in styles]
    ctx_full = model.encode(model.token_ids(texts), phi, weights)  # (B, L, D)
    ctx_empty = model.encode(model.token_ids([""] * n))
    src = model.source_latents(images)  # (B, 4, h, w)
    scheduler = DDIMScheduler.from_config(model.scheduler.config)
    scheduler.set_timesteps(steps)
    generator = torch.Generator().manual_seed(seed)
    latents = randn_tensor(src.shape, generator=generator) * scheduler.init_noise_sigma  # z_T
    outs = []
    for i in range(0, n, batch_size):
        z = latents[i:i + batch_size]
        s, cf, ce = src[i:i + batch_size], ctx_full[i:i + batch_size], ctx_empty[i:i + batch_size]
        cond = torch.cat([s, s, torch.zeros_like(s)])  # (3B, 4, h, w): full, image only, unconditional
        ctx = torch.cat([cf, ce, ce])  # (3B, L, D)
        for t in scheduler.timesteps:
            u = torch.cat([scheduler.scale_model_input(torch.cat([z] * 3), t), cond], dim=1)  # (3B, 8, h, w)
            eps_full, eps_image, eps_uncond = model.unet(u, t, encoder_hidden_states=ctx).sample.chunk(3)
            eps = dual_guidance(eps_uncond, eps_image, eps_full, s_img, s_txt, guide_rescale)
            z = scheduler.step(eps, t, z).prev_sample
        outs.append(z)
    z0 = torch.cat(outs)
    if return_latents:
        return z0
    return to_uint8_images(model.vae.decode(z0 / model.vae.config.scaling_factor).sample)
