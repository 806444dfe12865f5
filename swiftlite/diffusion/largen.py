"""LAR-Gen at tiny scale: Locate, Assign, Refine for text- and subject-guided inpainting.

Pan, Mao, Jiang, Han, Zhang & He, "Locate, Assign, Refine: Taming Customized Promptable Image Inpainting",
arXiv:2403.19534. Inputs: a scene x, a mask m, a subject image x_obj and a local text s; the masked region
is filled with the subject, as the text describes it, and the rest of the scene is kept::

    Locate   u = [z_t ; m↓ ; E(x ⊙ (1 − m))]                    4 + 1 + 4 = 9 U-Net input channels
             conv_in' = [W | 0]: the 5 new input channels start at zero (:mod:`.widen`)
    Assign   Z = Attn(Q, K_txt, V_txt) + λ · Attn(Q, K_img, V_img)           in every cross-attention
             Q = H W_q,  K_txt = c W_k,  V_txt = c W_v,  K_img = e W_k^ip,  V_img = e W_v^ip
             e = SubjectEncoder(x_obj) ∈ R^{N×D} (N subject tokens), λ = ``image_scale``
    Refine   r = the decoder self-attention inputs of a reference U-Net run on E(x_obj)
             Z = Attn(Q, [K ; K_ref], [V ; V_ref]),  [K ; K_ref] = [y ; r] W_k, [V ; V_ref] = [y ; r] W_v
             in every decoder self-attention (``attn1(y, context=cat([y, r]))``)

All three go through diffusers' attention-processor interface (``Attention.set_processor``), not a fork of
the U-Net: :class:`AssignProcessor` (an ``nn.Module`` holding ``to_k_ip`` / ``to_v_ip``, as diffusers'
own IP-Adapter processors do) on every ``attn2``, :class:`RefineProcessor` on every decoder ``attn1`` of
the main U-Net, :class:`ReferenceRecorder` on the same layers of the frozen reference U-Net. Subject tokens
and reference features travel beside the U-Net call in a :class:`LargenState`, set by
:meth:`LarGen.condition` (the ``condition_context`` contract of :func:`swiftlite.diffusion.sample`).
Stages switch on one at a time: ``LarGen(unet, stages=("locate",))``, then :meth:`LarGen.add_stage`.

Rows without a subject (the text-only task) get zero subject tokens (``to_v_ip`` has no bias, so the image
branch adds exactly 0) and their reference keys masked out.

What is the paper's and what is ours. Public facts (Scepter's ``largen_inference.py`` and
``unet_module.py``): the 9-channel input with zero-initialised new ``conv_in`` weights, the decoupled
cross-attention with ``to_k_ip`` / ``to_v_ip`` and λ = ``image_scale`` (default 1.0) used only for subject
tasks, and the reference keys/values concatenated in decoder self-attention (switched off in the public
release). **Our reading** (no training code, RefineNet weights or data engine are public): the reference
U-Net is a frozen copy of the base 4-channel U-Net run once per image at t = 0 on the clean subject latent
with the empty prompt; the subject encoder is a small CNN plus learned queries (IP-Adapter-Plus' resampler
in one attention layer), not CLIP, and it can first be aligned with the text encoder
(:func:`align_subject_encoder`: its N = 8 tokens regress the first rows of the subject's caption context),
standing in for the text-aligned image space that CLIP gives the paper; ``to_k_ip`` / ``to_v_ip`` start as copies of ``to_k`` / ``to_v``
(IP-Adapter's init); the whole U-Net, the encoder and the new projections train together on the three
tasks with the package's denoising loss; the data engine is :mod:`swiftlite.data.inpaint`.

Differences from the paper: SD 1.5 / SDXL and real photos there, ``sd-tiny`` (8×8 latents) and 32-px
shapes-world scenes here; CLIP image features there, a CNN trained from scratch here; the paper trains in
stages on millions of mined quadruplets, we train minutes on thousands of drawn ones.
"""
from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..data.shapes import to_pixel_values
from .sampling import prompt_embeddings, sample, unet_output
from .training import TextToImageLoss, diffusion_target
from .widen import INPAINT_CHANNELS, widen_conv_in

STAGES: tuple[str, ...] = ("locate", "assign", "refine")
PSNR_CAP = 100.0  # dB, for images identical outside the mask

__all__ = ["STAGES", "LargenState", "AssignProcessor", "RefineProcessor", "ReferenceRecorder", "SubjectEncoder",
           "LarGen", "LargenLoss", "encode_quadruplets", "latent_mask", "inpaint", "largen_scores",
           "decoupled_attention", "decoder_self_attention_names", "cross_attention_names", "ARMS",
           "train_largen", "evaluate_largen", "align_subject_encoder", "subject_condition", "PSNR_CAP"]


@dataclass
class LargenState:
    """What the processors read during one U-Net call (set by :meth:`LarGen.condition`, cleared after).

    ``subject_tokens`` (B, N, D) or None; ``reference`` {layer name: (B, L, C)} or None;
    ``keep_reference`` (B,) bool, rows whose reference keys are attended; ``recording``: the dict a
    :class:`ReferenceRecorder` writes into while the reference U-Net runs."""

    subject_tokens: torch.Tensor | None = None
    reference: dict[str, torch.Tensor] | None = None
    keep_reference: torch.Tensor | None = None
    recording: dict[str, torch.Tensor] | None = field(default=None, repr=False)


def _check_plain(attn: nn.Module, name: str) -> None:
    """The processors below cover diffusers' ``Attention`` as SD's transformer blocks use it."""
    for flag in ("spatial_norm", "group_norm", "norm_cross", "norm_q"):
        if getattr(attn, flag, None) is not None:
            raise ValueError(f"{name}: attention with {flag} is not supported by LAR-Gen's processors "
                             "(SD-style transformer blocks have none)")
    if getattr(attn, "residual_connection", False):
        raise ValueError(f"{name}: attention with residual_connection=True is not supported")


def _heads(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    return x.view(b, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)  # (B, L, h·d) -> (B, h, L, d)


def _merge_heads(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)  # (B, h, L, d) -> (B, L, h·d)


def _out(attn: nn.Module, z: torch.Tensor) -> torch.Tensor:
    z = attn.to_out[1](attn.to_out[0](z))  # W_o z, dropout
    return z / attn.rescale_output_factor


def _match_batch(x: torch.Tensor, b: int, what: str) -> torch.Tensor:
    """(B', ...) -> (b, ...) by repeating, when classifier-free guidance doubled the U-Net batch."""
    if x.shape[0] == b:
        return x
    if b % x.shape[0]:
        raise ValueError(f"{what}: batch {x.shape[0]} does not divide the U-Net batch {b}")
    return x.repeat(b // x.shape[0], *([1] * (x.dim() - 1)))


def decoupled_attention(q: torch.Tensor, k_txt: torch.Tensor, v_txt: torch.Tensor, k_img: torch.Tensor,
                        v_img: torch.Tensor, image_scale: float) -> torch.Tensor:
    """Z = Attn(Q, K_txt, V_txt) + λ · Attn(Q, K_img, V_img) on (B, heads, L, d) tensors."""
    text = F.scaled_dot_product_attention(q, k_txt, v_txt)  # Attn(Q, K_txt, V_txt)
    image = F.scaled_dot_product_attention(q, k_img, v_img)  # Attn(Q, K_img, V_img)
    # Z = Attn(Q, K_txt, V_txt) + λ · Attn(Q, K_img, V_img)
    return text + image_scale * image


class AssignProcessor(nn.Module):
    """Decoupled cross-attention for one ``attn2``: text keys/values as before, subject-token keys/values
    from the new ``to_k_ip`` / ``to_v_ip`` (initialised as copies of ``to_k`` / ``to_v``, no bias)."""

    def __init__(self, attn: nn.Module, state: LargenState, image_scale: float = 1.0, name: str = "attn2") -> None:
        super().__init__()
        _check_plain(attn, name)
        self.state, self.image_scale, self.name = state, float(image_scale), name
        self.to_k_ip = nn.Linear(attn.to_k.in_features, attn.to_k.out_features, bias=False)
        self.to_v_ip = nn.Linear(attn.to_v.in_features, attn.to_v.out_features, bias=False)
        with torch.no_grad():
            self.to_k_ip.weight.copy_(attn.to_k.weight)
            self.to_v_ip.weight.copy_(attn.to_v.weight)

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        if attention_mask is not None:
            raise ValueError(f"{self.name}: AssignProcessor does not take an attention mask")
        c = hidden_states if encoder_hidden_states is None else encoder_hidden_states  # (B, L_txt, D)
        q = _heads(attn, attn.to_q(hidden_states))  # (B, h, L, d)
        k, v = _heads(attn, attn.to_k(c)), _heads(attn, attn.to_v(c))  # (B, h, L_txt, d)
        tokens = self.state.subject_tokens
        if tokens is None:  # no subject: exactly the text-only cross-attention
            z = F.scaled_dot_product_attention(q, k, v)
        else:
            e = _match_batch(tokens, hidden_states.shape[0], "subject tokens").to(hidden_states.dtype)  # (B, N, D)
            k_ip, v_ip = _heads(attn, self.to_k_ip(e)), _heads(attn, self.to_v_ip(e))  # (B, h, N, d)
            z = decoupled_attention(q, k, v, k_ip, v_ip, self.image_scale)
        return _out(attn, _merge_heads(attn, z))


class RefineProcessor:
    """Decoder self-attention of the main U-Net with the reference features as extra keys/values:
    ``attn1(y, context=cat([y, r]))``; without a reference (or with its rows masked out) it is plain
    self-attention."""

    def __init__(self, attn: nn.Module, state: LargenState, name: str) -> None:
        _check_plain(attn, name)
        self.state, self.name = state, name

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        y = hidden_states  # (B, L, C): the self-attention input (after the block's norm1)
        reference = None if self.state.reference is None else self.state.reference.get(self.name)
        mask = None
        if reference is None:
            context = y
        else:
            r = _match_batch(reference, y.shape[0], f"{self.name} reference").to(y.dtype)  # (B, L_ref, C)
            context = torch.cat([y, r], dim=1)  # [y ; r]  (B, L + L_ref, C)
            if self.state.keep_reference is not None:
                keep = _match_batch(self.state.keep_reference.bool(), y.shape[0], "keep_reference")  # (B,)
                own = torch.ones(y.shape[0], y.shape[1], dtype=torch.bool, device=y.device)
                mask = torch.cat([own, keep[:, None].expand(-1, r.shape[1])], dim=1)[:, None, None, :]  # (B,1,1,L+L_ref)
        q = _heads(attn, attn.to_q(y))  # (B, h, L, d)
        k, v = _heads(attn, attn.to_k(context)), _heads(attn, attn.to_v(context))  # (B, h, L(+L_ref), d)
        # Z = Attn(Q, [K ; K_ref], [V ; V_ref])
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return _out(attn, _merge_heads(attn, z))


class ReferenceRecorder:
    """On the reference U-Net: stores this decoder self-attention's input r in ``state.recording``, then
    computes plain self-attention (the reference U-Net's own output is not used)."""

    def __init__(self, attn: nn.Module, state: LargenState, name: str) -> None:
        _check_plain(attn, name)
        self.state, self.name = state, name

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args: Any,
                 **kwargs: Any) -> torch.Tensor:
        if self.state.recording is not None:
            self.state.recording[self.name] = hidden_states  # r: (B, L, C)
        q, k, v = (_heads(attn, f(hidden_states)) for f in (attn.to_q, attn.to_k, attn.to_v))
        return _out(attn, _merge_heads(attn, F.scaled_dot_product_attention(q, k, v)))


def _processor_names(unet: nn.Module, attn: str, decoder_only: bool) -> list[str]:
    names = [n for n in unet.attn_processors if n.endswith(f"{attn}.processor")]
    return [n for n in names if n.startswith("up_blocks.")] if decoder_only else names


def cross_attention_names(unet: nn.Module) -> list[str]:
    """Every cross-attention (``attn2``) processor name of a diffusers U-Net (where Assign attaches)."""
    return _processor_names(unet, "attn2", decoder_only=False)


def decoder_self_attention_names(unet: nn.Module) -> list[str]:
    """Every decoder self-attention (``up_blocks.*.attn1``) processor name (where Refine attaches)."""
    return _processor_names(unet, "attn1", decoder_only=True)


def _module(unet: nn.Module, processor_name: str) -> nn.Module:
    return unet.get_submodule(processor_name.removesuffix(".processor"))


class SubjectEncoder(nn.Module):
    """x_obj (B, 3, H, W) in [-1, 1] -> N subject tokens (B, N, D).

    A small CNN gives patch features, N learned queries attend over them (IP-Adapter-Plus' resampler,
    one layer), a LayerNorm closes::

        P = conv(x_obj) ∈ R^{(H/4·W/4) × D},   e = LN(q + MHA(q, P, P)),  q ∈ R^{N×D} learned
    """

    def __init__(self, dim: int, n_tokens: int = 8, width: int = 32, heads: int = 4) -> None:
        super().__init__()
        self.dim, self.n_tokens, self.width, self.heads = dim, n_tokens, width, heads
        self.cnn = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(),
                                 nn.Conv2d(width, dim, 3, stride=2, padding=1))  # (B, D, H/4, W/4)
        self.queries = nn.Parameter(torch.randn(n_tokens, dim) * dim ** -0.5)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        p = self.cnn(pixel_values).flatten(2).transpose(1, 2)  # (B, D, h, w) -> (B, h·w, D)
        q = self.queries.expand(p.shape[0], -1, -1)  # (B, N, D)
        # e = LN(q + MHA(q, P, P))
        return self.norm(q + self.attn(q, p, p, need_weights=False)[0])


def _stages(stages: Sequence[str]) -> tuple[str, ...]:
    bad = [s for s in stages if s not in STAGES]
    if bad or "locate" not in stages:
        raise ValueError(f"stages={list(stages)!r}: choose from {list(STAGES)}, 'locate' always included "
                         "(the 9-channel input is what makes the U-Net an inpainter)")
    if "refine" in stages and "assign" not in stages:
        raise ValueError(f"stages={list(stages)!r}: 'refine' needs 'assign' (add the stages in order)")
    return tuple(s for s in STAGES if s in stages)


class LarGen(nn.Module):
    """A 9-channel inpainting U-Net with LAR-Gen's stages switched on one at a time.

    ``base_unet``: the 4-channel text-to-image U-Net (``zoo.load("sd-tiny").unet``); it is copied, never
    changed. ``stages``: a prefix of ``("locate", "assign", "refine")``. ``image_scale``: λ.
    Call it as the U-Net (``model(u, t, encoder_hidden_states=c)`` with u of 9 channels) inside
    ``with model.condition(subject, has_subject):``.
    """

    def __init__(self, base_unet: nn.Module, stages: Sequence[str] = ("locate",), *, image_scale: float = 1.0,
                 n_tokens: int = 8, encoder_width: int = 32) -> None:
        super().__init__()
        if getattr(base_unet.config, "in_channels", None) != 4:
            raise ValueError(f"LarGen: base_unet must be the 4-channel text-to-image U-Net, got in_channels="
                             f"{getattr(base_unet.config, 'in_channels', None)} (pass zoo.load('sd-tiny').unet)")
        self.state = LargenState()
        self.n_tokens, self.encoder_width, self.stages = n_tokens, encoder_width, ("locate",)
        self._image_scale = float(image_scale)
        self._base = [base_unet]  # a plain list: the base is not a submodule (not trained, not saved)
        # Locate: u = [z_t ; m↓ ; E(x ⊙ (1 − m))], conv_in' = [W | 0]
        self.unet = widen_conv_in(base_unet, INPAINT_CHANNELS)
        self.original_processors = dict(self.unet.attn_processors)
        for stage in _stages(stages)[1:]:
            self.add_stage(stage)

    @property
    def config(self) -> Any:
        return self.unet.config

    @property
    def image_scale(self) -> float:
        return self._image_scale

    @image_scale.setter
    def image_scale(self, value: float) -> None:
        """λ of every Assign processor."""
        self._image_scale = float(value)
        for name in cross_attention_names(self.unet):
            proc = _module(self.unet, name).processor
            if isinstance(proc, AssignProcessor):
                proc.image_scale = self._image_scale

    def add_stage(self, stage: str) -> "LarGen":
        """Switch on ``"assign"`` (subject encoder + decoupled cross-attention) or ``"refine"`` (reference
        U-Net + extended decoder self-attention), in that order; returns self."""
        _stages((*self.stages, stage))
        if stage in self.stages:
            raise ValueError(f"LarGen.add_stage: {stage!r} is already on (stages {self.stages})")
        if stage == "assign":
            dim = self.unet.config.cross_attention_dim
            self.subject_encoder = SubjectEncoder(dim, self.n_tokens, self.encoder_width)
            self.unet.set_attn_processor({**dict(self.unet.attn_processors), **{
                n: AssignProcessor(_module(self.unet, n), self.state, self._image_scale, n)
                for n in cross_attention_names(self.unet)}})
        elif stage == "refine":
            reference = copy.deepcopy(self._base[0]).requires_grad_(False).eval()
            reference.set_attn_processor({**dict(reference.attn_processors), **{
                n: ReferenceRecorder(_module(reference, n), self.state, n) for n in decoder_self_attention_names(reference)}})
            self._reference = [reference]  # frozen copy of the base: not a submodule, not saved
            self.unet.set_attn_processor({**dict(self.unet.attn_processors), **{
                n: RefineProcessor(_module(self.unet, n), self.state, n) for n in decoder_self_attention_names(self.unet)}})
        self.stages = _stages((*self.stages, stage))
        return self

    def remove_processors(self) -> nn.Module:
        """Put back the U-Net's own processors (its ``to_k_ip`` / ``to_v_ip`` leave with them) and return
        the 9-channel U-Net; ``stages`` falls back to ``("locate",)``."""
        self.unet.set_attn_processor(dict(self.original_processors))
        self.stages = ("locate",)
        for attr in ("subject_encoder",):
            if hasattr(self, attr):
                delattr(self, attr)
        self._reference = []
        return self.unet

    @property
    def reference_unet(self) -> nn.Module | None:
        return self._reference[0] if getattr(self, "_reference", None) else None

    def forward(self, sample: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, **kwargs: Any) -> Any:
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)

    @torch.no_grad()
    def reference_features(self, subject_latents: torch.Tensor, empty_states: torch.Tensor) -> dict[str, torch.Tensor]:
        """r for every decoder self-attention: the reference U-Net run on E(x_obj) at t = 0 (our reading)."""
        self.state.recording = {}
        try:
            t = torch.zeros(subject_latents.shape[0], dtype=torch.long, device=subject_latents.device)
            c = _match_batch(empty_states, subject_latents.shape[0], "empty prompt")
            self.reference_unet(subject_latents, t, encoder_hidden_states=c)
            return dict(self.state.recording)
        finally:
            self.state.recording = None

    @contextlib.contextmanager
    def condition(self, condition: dict[str, torch.Tensor] | None) -> Iterator[None]:
        """Hand the subject to the processors for the calls inside the block.

        ``condition``: None (no subject) or a dict with ``subject`` (B, 3, H, W) pixels in [-1, 1],
        ``has_subject`` (B,) 0/1 and, for Refine, ``subject_latents`` (B, 4, h, w) and ``empty_states``
        (1 or B, L, D) (the empty prompt's embeddings)."""
        try:
            if condition is not None and "assign" in self.stages:
                keep = condition["has_subject"].float()  # (B,)
                e = self.subject_encoder(condition["subject"].to(next(self.subject_encoder.parameters()).device))
                self.state.subject_tokens = e * keep[:, None, None].to(e.device)  # no subject: e = 0, branch adds 0
                if "refine" in self.stages:
                    self.state.reference = self.reference_features(condition["subject_latents"],
                                                                   condition["empty_states"])
                    self.state.keep_reference = keep.bool()
            yield
        finally:
            self.state.subject_tokens = self.state.reference = self.state.keep_reference = None

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def save_pretrained(self, directory: str | Path) -> None:
        """``directory/largen.json`` (stages, λ, encoder shape) + ``largen.safetensors`` (the 9-channel U-Net,
        the subject encoder and the Assign projections: everything but the frozen base)."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "largen.json").write_text(json.dumps({"stages": list(self.stages), "image_scale": self._image_scale,
                                                   "n_tokens": self.n_tokens, "encoder_width": self.encoder_width}))
        save_file({k: v.detach().contiguous() for k, v in self.state_dict().items()}, str(d / "largen.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str | Path, base_unet: nn.Module) -> "LarGen":
        """The inverse of :meth:`save_pretrained`, over the same 4-channel ``base_unet``."""
        from safetensors.torch import load_file

        d = Path(directory)
        config = json.loads((d / "largen.json").read_text())
        model = cls(base_unet, config["stages"], image_scale=config["image_scale"], n_tokens=config["n_tokens"],
                    encoder_width=config["encoder_width"])
        model.load_state_dict(load_file(str(d / "largen.safetensors")))
        return model.eval()


def latent_mask(mask: Any, latent_size: int) -> torch.Tensor:
    """(B, H, W) {0, 1} pixel mask -> (B, 1, h, w) float mask at the latent size (nearest, as diffusers'
    inpainting pipeline resizes it)."""
    m = torch.as_tensor(np.array(mask)).float()[:, None]  # (B, 1, H, W)
    return F.interpolate(m, size=(latent_size, latent_size), mode="nearest")


def encode_quadruplets(pipe: Any, data: Any, batch_size: int = 256):
    """``data`` (:func:`swiftlite.data.inpaint.inpaint_dataset`) with the latents every step needs, computed
    once: ``latents`` s·μ(x), ``masked_latents`` s·μ(x ⊙ (1 − m)), ``subject_latents`` s·μ(x_obj) and
    ``input_ids`` (the task's prompt), in torch format."""
    import datasets

    vae = pipe.vae

    def encode(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = [vae.encode(to_pixel_values(images[i:i + batch_size])).latent_dist.mean
                   for i in range(0, len(images), batch_size)]
        return (torch.cat(out) * vae.config.scaling_factor).numpy()

    arrays = data.with_format("numpy")
    ids = pipe.tokenizer(list(data["prompt"]), padding="max_length", truncation=True,
                         max_length=pipe.tokenizer.model_max_length)["input_ids"]
    out = data
    for name, column in (("latents", "image"), ("masked_latents", "masked_image"), ("subject_latents", "subject")):
        z = encode(arrays[column])  # (N, C, h, w)
        out = out.add_column(name, z.tolist(), feature=datasets.Array3D(z.shape[1:], "float32"))
    return out.add_column("input_ids", ids).with_format("torch")


class LargenLoss(TextToImageLoss):
    """The package's denoising loss (:class:`~swiftlite.diffusion.TextToImageLoss`) for a :class:`LarGen`::

        u = [z_t ; m↓ ; E(x ⊙ (1 − m))],   L = ‖f_θ(u, t, c, x_obj) − target‖²

    The batch (from :func:`encode_quadruplets`) brings ``latents``, ``masked_latents``, ``mask``,
    ``input_ids``, ``subject``, ``subject_latents``, ``has_subject``."""

    def __call__(self, model: LarGen, batch: Any) -> torch.Tensor:
        x0 = self.clean_sample(batch)  # (B, 4, h, w) scaled latents
        ids = batch["input_ids"].clone()  # (B, L)
        if self.p_uncond > 0:
            drop = torch.rand(ids.shape[0]) < self.p_uncond
            ids[drop] = self.empty_ids.to(ids.dtype)
        ctx = self.encode(model, ids)  # (B, L, D)
        noise = torch.randn_like(x0)  # ε
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (x0.shape[0],))  # t ~ U{0..T-1}
        x_t = self.scheduler.add_noise(x0, noise, t)  # √ᾱ_t x₀ + √(1−ᾱ_t) ε
        target = diffusion_target(self.scheduler, x0, noise, t)
        # u = [z_t ; m↓ ; E(x ⊙ (1 − m))]
        u = torch.cat([x_t, latent_mask(batch["mask"], x0.shape[-1]), batch["masked_latents"].float()], dim=1)
        with model.condition(subject_condition(batch, self.empty_states(ctx))):
            pred = unet_output(model(u, t, encoder_hidden_states=ctx))
        return F.mse_loss(pred, target)

    def empty_states(self, like: torch.Tensor) -> torch.Tensor:
        if self.empty_ids is None:
            raise ValueError("LargenLoss.empty_ids: required (the reference U-Net reads the empty prompt), e.g. "
                             "tokenizer('', padding='max_length', max_length=tokenizer.model_max_length)['input_ids']")
        with torch.no_grad():
            return self.text_encoder(input_ids=self.empty_ids[None].to(like.device)).last_hidden_state  # (1, L, D)


def subject_condition(batch: Any, empty_states: torch.Tensor) -> dict[str, torch.Tensor]:
    """The dict :meth:`LarGen.condition` reads, from a batch with ``subject``, ``subject_latents``, ``has_subject``."""
    return {"subject": to_pixel_values(batch["subject"]), "has_subject": torch.as_tensor(batch["has_subject"]).float(),
            "subject_latents": torch.as_tensor(batch["subject_latents"]).float(), "empty_states": empty_states}


@torch.no_grad()
def inpaint(pipe: Any, model: LarGen, quads: Any, *, with_subject: bool, with_text: bool, seed: int = 0,
            num_inference_steps: int = 20, guidance_scale: float = 2.0, mask: np.ndarray | None = None) -> np.ndarray:
    """Inpaint every quadruplet of ``quads`` (from :func:`encode_quadruplets`) with the subject and/or the
    local caption; ``mask`` (H, W) replaces every row's mask (the widget's region). uint8 (B, H, W, 3)."""
    rows = quads[:]  # dict of tensors
    masks = np.asarray(rows["mask"]) if mask is None else np.broadcast_to(mask, np.asarray(rows["mask"]).shape)
    images = np.asarray(rows["image"])
    masked = np.where(masks[..., None] == 1, np.uint8(128), images)
    size = model.unet.config.sample_size
    with torch.no_grad():
        masked_latents = pipe.vae.encode(to_pixel_values(masked)).latent_dist.mean * pipe.vae.config.scaling_factor
    extra = torch.cat([latent_mask(masks, size), masked_latents], dim=1)  # [m↓ ; E(x ⊙ (1 − m))]
    prompts = list(rows["caption"]) if with_text else [""] * len(images)
    condition = None
    if with_subject and "assign" in model.stages:
        empty = prompt_embeddings(pipe, [""])
        batch = {"subject": rows["subject"], "subject_latents": rows["subject_latents"],
                 "has_subject": torch.ones(len(images))}
        condition = subject_condition(batch, empty)
    return sample(pipe, prompts, unet=model, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                  seed=seed, extra_inputs=extra, condition=condition,
                  condition_context=model.condition if condition is not None else None)


def largen_scores(images: np.ndarray, quads: Any, judge: Any, *, mask: np.ndarray | None = None) -> dict[str, float]:
    """``identity``: share of images where the judge names the subject's shape, colour and style;
    ``shape`` / ``colour`` / ``style``: each alone; ``background_psnr`` (dB): PSNR outside the mask
    against the original scene (higher = better kept; identical images: ``PSNR_CAP``)."""
    rows = quads[:]
    got = judge.predict(np.asarray(images, dtype=np.uint8))
    match = {f: np.array([g == w for g, w in zip(got[f], rows[f])]) for f in ("shape", "colour", "style")}
    masks = np.asarray(rows["mask"]) if mask is None else np.broadcast_to(mask, np.asarray(rows["mask"]).shape)
    outside = (1 - masks)[..., None].astype(bool)  # (B, H, W, 1)
    diff = (np.asarray(images, np.float64) - np.asarray(rows["image"], np.float64)) ** 2
    mse = (diff * outside).sum() / max(outside.sum() * 3, 1)
    return {"identity": float(np.mean(match["shape"] & match["colour"] & match["style"])),
            **{f: float(m.mean()) for f, m in match.items()},
            "background_psnr": PSNR_CAP if mse == 0 else float(min(PSNR_CAP, 10 * np.log10(255.0 ** 2 / mse)))}


ARMS: dict[str, tuple[str, ...]] = {"Locate": ("locate",), "+Assign": ("locate", "assign"),
                                    "+Refine": ("locate", "assign", "refine")}


def align_subject_encoder(model: LarGen, pipe: Any, quads: Any, *, steps: int, batch_size: int = 64,
                          lr: float = 3e-3, seed: int = 0) -> list[float]:
    """Train the subject encoder alone so that its N tokens regress the first N context rows of the
    subject's local caption::

        min ‖SubjectEncoder(x_obj) − τ(caption)[:N]‖²        (τ: pipe's frozen text encoder)

    **Our reading** of what CLIP gives the paper: image features that already live in the text encoder's
    space. With ``to_k_ip`` / ``to_v_ip`` copies of ``to_k`` / ``to_v``, Assign then starts as a second
    prompt that describes the subject, instead of noise the U-Net must first learn to read. Returns the
    loss per step."""
    if "assign" not in model.stages:
        raise ValueError(f"align_subject_encoder: the model has no subject encoder (stages {model.stages}); "
                         f"switch Assign on first (LarGen(..., stages=('locate', 'assign')))")
    import datasets

    from ..train import train  # swiftlite.train imports the whole trainer stack: loaded when a run starts

    rows = quads.with_format("numpy")[:]
    ids = pipe.tokenizer(list(rows["caption"]), padding="max_length", truncation=True,
                         max_length=pipe.tokenizer.model_max_length, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        targets = pipe.text_encoder(input_ids=ids).last_hidden_state[:, :model.n_tokens]  # (B, N, D)
    pairs = datasets.Dataset.from_dict({"subject": to_pixel_values(rows["subject"]).numpy(),  # (B, 3, H, W)
                                        "target": targets.numpy()}).with_format("torch")

    def regression(encoder: nn.Module, batch: Any) -> torch.Tensor:
        return F.mse_loss(encoder(batch["subject"]), batch["target"])

    history = train(model.subject_encoder, pairs, regression, steps=steps, batch_size=min(batch_size, len(pairs)),
                    lr=lr, seed=seed, progress=False)
    return history.loss


def train_largen(pipe: Any, quads: Any, stages: Sequence[str], *, steps: int, seed: int = 0, lr: float = 1e-3,
                 batch_size: int = 32, p_uncond: float = 0.1, image_scale: float = 1.0, start: LarGen | None = None,
                 align_steps: int = 0, encoder_from: LarGen | None = None, progress: bool = True) -> LarGen:
    """A :class:`LarGen` with ``stages`` over ``pipe.unet``, trained ``steps`` steps on the three tasks of
    ``quads`` with :class:`LargenLoss` and :func:`swiftlite.train.train` (AdamW, cosine, seeded).

    ``start``: a trained model whose 9-channel U-Net weights this one starts from (coarse to fine: a
    Locate model, then Assign and Refine switched on); the new stages' weights start fresh.
    ``align_steps``: first train the subject encoder alone that many steps (:func:`align_subject_encoder`).
    ``encoder_from``: a model whose subject encoder this one starts from (one aligned encoder shared by
    several arms, so each does not repeat the alignment)."""
    from ..train import train  # swiftlite.train imports the whole trainer stack: loaded when a run starts

    empty = pipe.tokenizer("", padding="max_length", max_length=pipe.tokenizer.model_max_length)["input_ids"]
    loss = LargenLoss.for_pipeline(pipe, p_uncond=p_uncond, empty_ids=empty)
    torch.manual_seed(seed)  # the subject encoder's init
    model = LarGen(pipe.unet, stages, image_scale=image_scale)
    if start is not None:
        weights = {k: v for k, v in start.unet.state_dict().items() if ".processor." not in k}  # the U-Net's own
        missing, unexpected = model.unet.load_state_dict(weights, strict=False)
        if unexpected or any(".processor." not in k for k in missing):
            raise ValueError(f"train_largen(start=...): its U-Net does not match ({unexpected or missing})")
        with torch.no_grad():  # IP-Adapter's init, from the started U-Net's own text projections
            for name in cross_attention_names(model.unet):
                attn = _module(model.unet, name)
                if isinstance(attn.processor, AssignProcessor):
                    attn.processor.to_k_ip.weight.copy_(attn.to_k.weight)
                    attn.processor.to_v_ip.weight.copy_(attn.to_v.weight)
    if encoder_from is not None:
        if "assign" not in model.stages or not hasattr(encoder_from, "subject_encoder"):
            raise ValueError(f"train_largen(encoder_from=...): both models need Assign (stages {model.stages} and "
                             f"{getattr(encoder_from, 'stages', None)})")
        model.subject_encoder.load_state_dict(encoder_from.subject_encoder.state_dict())
    if align_steps and "assign" in model.stages:
        model.align_history = align_subject_encoder(model, pipe, quads, steps=align_steps, seed=seed)
    model.history = train(model, quads, loss, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                          warmup_steps=max(1, steps // 10), progress=progress)
    return model.eval()


def evaluate_largen(pipe: Any, model: LarGen, quads: Any, judge: Any, *, seed: int = 0,
                    **sampling: Any) -> dict[str, float]:
    """The ablation's three numbers for one model: ``identity`` (subject-only task: the judge names the
    subject's shape, colour and style), ``text`` (text-only task: the judge names the caption's shape, colour
    and style), ``background_psnr`` (dB outside the mask, text+subject task)."""
    subject = largen_scores(inpaint(pipe, model, quads, with_subject=True, with_text=False, seed=seed, **sampling),
                            quads, judge)
    text = largen_scores(inpaint(pipe, model, quads, with_subject=False, with_text=True, seed=seed, **sampling),
                         quads, judge)
    both = largen_scores(inpaint(pipe, model, quads, with_subject=True, with_text=True, seed=seed, **sampling),
                         quads, judge)
    return {"identity": subject["identity"], "text": text["identity"], "both_identity": both["identity"],
            "background_psnr": both["background_psnr"]}
