"""Tuning multimodal LLMs (MLLMs) as SWIFT does: a model described by its parts, ``freeze_*`` flags,
``all-linear`` over the enabled parts only, ``lora_llm``, and one learning rate per part.

SWIFT (arXiv:2408.05517) tunes an MLLM as three parts joined in one forward pass, e.g. LLaVA
(Liu et al., "Visual Instruction Tuning", arXiv:2304.08485)::

    Z_v = g(X_v)                      # vision tower (ViT), image -> patch features
    H_v = W_2 · GELU(W_1 · Z_v)       # aligner (projector), features -> LLM embeddings
    y   = f_φ([H_v ; H_q])            # language model on image embeddings + text embeddings

ms-swift names the parts with a ``MultiModelKeys`` record (module-name prefixes, so the same code
serves every model of one family): ``language_model`` (for LLaVA-HF ``model.language_model`` and
``lm_head``), ``aligner`` (``model.multi_modal_projector``), ``vision_tower`` (``model.vision_tower``)
and ``generator`` (image/audio generators, always frozen). Three flags choose what trains, with
ms-swift's defaults ``freeze_llm=False, freeze_vit=True, freeze_aligner=True``:

- full training (:func:`freeze_parts`): every parameter trainable, then the frozen parts frozen,
  then an enabled aligner made trainable again (it wins over a frozen vision tower it sits in);
- LoRA with ``target_modules="all-linear"`` (:func:`multimodal_target_regex`): a regex over the
  Linear layers of the *enabled* parts only, never ``lm_head``; an aligner nested inside the vision
  tower (Qwen2-VL's ``model.visual.merger``) is cut out of the tower's alternative by a negative
  look-ahead and only matched when the aligner itself is enabled;
- ``lora_llm`` (:func:`prepare_lora_llm`): LoRA on the LLM plus *full* training of the vision tower
  and aligner; those full weights are saved beside the adapter in ``vit.safetensors``
  (:func:`save_lora_llm`) and loaded back by :func:`load_lora_llm`;
- per-part learning rates (:func:`multimodal_param_groups`): ``vit_lr`` and ``aligner_lr`` (None:
  the base ``lr``), handed to :func:`swiftlite.train.train` as ``param_groups``.

Everything works on the real transformers class (``LlavaForConditionalGeneration``, also
``Qwen2VLForConditionalGeneration``), so it runs unchanged on a downloaded checkpoint.

Differences from ms-swift: parts are found by ``model.config.model_type`` in :data:`MODEL_ARCHS`
(ms-swift keys them by its own model_type); Linear layers are selected by type (``nn.Linear``)
rather than by "linear" in the class name. ms-swift's regex is ``(?!aligner)P.*\\.(leaf names)``,
which also hits any module that merely shares a Linear's leaf name (Qwen2-VL's Conv3d
``model.visual.patch_embed.proj`` shares ``proj`` with the attention output); swiftlite's regex
lists relative names (layer numbers generalized) and so selects exactly the Linear layers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from ..api import Swift, SwiftModel
from ..core.io import StagedWrite
from ..train import trainable_param_groups
from ..tuners import LoRAConfig

__all__ = ["MultiModelKeys", "MODEL_ARCHS", "register_model_arch", "get_model_arch", "part_of",
           "freeze_parts", "multimodal_target_regex", "prepare_lora_llm", "save_lora_llm", "load_lora_llm",
           "multimodal_param_groups", "VIT_WEIGHTS_NAME"]

VIT_WEIGHTS_NAME = "vit.safetensors"  # ms-swift's name for lora_llm's full vision tower + aligner weights


@dataclass(frozen=True)
class MultiModelKeys:
    """Module-name prefixes of each part of a multimodal model (ms-swift's ``MultiModelKeys``)."""

    arch_name: str
    language_model: tuple[str, ...]
    aligner: tuple[str, ...]
    vision_tower: tuple[str, ...]
    generator: tuple[str, ...] = ()
    lm_head: str = "lm_head"  # the output head: never a LoRA target


MODEL_ARCHS: dict[str, MultiModelKeys] = {}


def register_model_arch(model_type: str, keys: MultiModelKeys) -> MultiModelKeys:
    """Describe the parts of models whose ``config.model_type`` is ``model_type``."""
    MODEL_ARCHS[model_type] = keys
    return keys


LLAVA_HF = register_model_arch("llava", MultiModelKeys(
    "llava_hf", language_model=("model.language_model", "lm_head"), aligner=("model.multi_modal_projector",),
    vision_tower=("model.vision_tower",)))
QWEN2_VL = register_model_arch("qwen2_vl", MultiModelKeys(
    "qwen2_vl", language_model=("model.language_model", "lm_head"), aligner=("model.visual.merger",),
    vision_tower=("model.visual",)))


def _unwrap(model: nn.Module) -> nn.Module:
    """The transformers model inside a SwiftModel (or the model itself)."""
    return model.base_model if isinstance(model, SwiftModel) else model


def get_model_arch(model: nn.Module) -> MultiModelKeys:
    """The :class:`MultiModelKeys` of ``model`` (found by ``model.config.model_type``)."""
    model = _unwrap(model)
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in MODEL_ARCHS:
        raise ValueError(f"model: no multimodal description for config.model_type={model_type!r}; known: "
                         f"{sorted(MODEL_ARCHS)}. Describe its parts with swiftlite.llm.multimodal.register_model_arch"
                         f"({model_type!r}, MultiModelKeys(...)).")
    return MODEL_ARCHS[model_type]


def _submodule(model: nn.Module, prefix: str) -> nn.Module:
    try:
        return model.get_submodule(prefix)
    except AttributeError:
        raise ValueError(f"MultiModelKeys: prefix {prefix!r} names no module of {type(model).__name__}; "
                         f"fix the registered description (top-level modules: "
                         f"{[n for n, _ in model.named_children()]}).") from None


def _check_flags(freeze_llm: bool, freeze_vit: bool, freeze_aligner: bool) -> None:
    if freeze_llm and freeze_vit and freeze_aligner:
        raise ValueError("freeze_llm=freeze_vit=freeze_aligner=True: every part is frozen, so nothing would train; "
                         "set at least one of them to False (ms-swift's default trains the LLM: freeze_llm=False).")


def part_of(model: nn.Module, arch: MultiModelKeys | None = None) -> dict[int, str]:
    """``id(parameter) -> part`` ("language_model", "vision_tower", "aligner", "generator") for every
    parameter of ``model`` (a SwiftModel's injected tuner parameters count for the part they sit in).
    A nested aligner wins over the vision tower around it."""
    base = _unwrap(model)
    arch = arch or get_model_arch(base)
    owner: dict[int, str] = {}
    for part in ("language_model", "vision_tower", "generator", "aligner"):  # later parts win (nesting)
        for prefix in getattr(arch, part):
            for p in _submodule(base, prefix).parameters():
                owner[id(p)] = part
    return owner


# ----------------------------------------------------------------------------------------------
# full training: which parameters train
# ----------------------------------------------------------------------------------------------


def freeze_parts(model: nn.Module, *, freeze_llm: bool = False, freeze_vit: bool = True,
                 freeze_aligner: bool = True) -> list[str]:
    """Set ``requires_grad`` for full training of an MLLM as ms-swift's ``freeze_*`` flags do.

    All parameters trainable; then the LLM (if ``freeze_llm``), the vision tower (if ``freeze_vit``)
    and the generator (always) frozen; then the aligner frozen (``freeze_aligner``) or made
    trainable again. Returns the names of the trainable parameters.
    """
    _check_flags(freeze_llm, freeze_vit, freeze_aligner)
    base = _unwrap(model)
    arch = get_model_arch(base)
    frozen = list(arch.generator)
    frozen += list(arch.language_model) if freeze_llm else []
    frozen += list(arch.vision_tower) if freeze_vit else []
    frozen += list(arch.aligner) if freeze_aligner else []
    base.requires_grad_(True)
    for prefix in frozen:
        _submodule(base, prefix).requires_grad_(False)
    if not freeze_aligner:  # trainable_parameters win over freeze_parameters (a nested aligner)
        for prefix in arch.aligner:
            _submodule(base, prefix).requires_grad_(True)
    return [n for n, p in base.named_parameters() if p.requires_grad]


# ----------------------------------------------------------------------------------------------
# LoRA: "all-linear" over the enabled parts
# ----------------------------------------------------------------------------------------------


def _linear_patterns(part: nn.Module, prefix: str, rejected: Iterable[str], lm_head: str) -> list[str]:
    """Regexes (relative to ``prefix``) that match exactly the nn.Linear layers of ``part`` outside
    ``rejected``: each relative name with its layer numbers generalized (``layers.0.mlp.up_proj`` ->
    ``layers\\.\\d+\\.mlp\\.up_proj``), so a 32-layer model still gives a short regex. A generalized
    pattern that would also match some other module keeps its literal names instead."""
    wanted: list[str] = []
    for name, module in part.named_modules():
        full = f"{prefix}.{name}"
        if not name or not isinstance(module, nn.Linear):
            continue
        if any(full == r or full.startswith(r + ".") for r in rejected):
            continue
        leaf = name.rsplit(".", 1)[-1]
        if leaf == lm_head or leaf in ("base_layer", "lora_A", "lora_B"):  # output head; an injected LoRA's parts
            continue
        wanted.append(name)
    others = [n for n, _ in part.named_modules() if n and n not in wanted]
    patterns: list[str] = []
    for name in wanted:
        *head, leaf = name.split(".")
        general = "\\.".join([r"\d+" if c.isdigit() else re.escape(c) for c in head] + [re.escape(leaf)])
        exact = not any(re.fullmatch(general, o) for o in others)
        pattern = general if exact else re.escape(name)
        if pattern not in patterns:
            patterns.append(pattern)
    return patterns


def multimodal_target_regex(model: nn.Module, *, freeze_llm: bool = False, freeze_vit: bool = True,
                            freeze_aligner: bool = True) -> str:
    """ms-swift's ``target_modules="all-linear"`` for an MLLM: one regex over the enabled parts.

    For each enabled part prefix ``P`` the regex gets the alternative ``P\\.(n_1|..|n_k)`` where
    ``n_i`` are the relative names of its Linear layers, layer numbers generalized to ``\\d+``.
    Linear layers of an aligner nested in ``P`` (a vision tower holding its merger) are left out
    of ``P``'s alternative, so they are matched only through the aligner's own, when it is enabled.
    ``lm_head`` is never matched. Hand the result to ``LoRAConfig(target_modules=...)`` (a string
    target is a full-match regex).
    """
    _check_flags(freeze_llm, freeze_vit, freeze_aligner)
    base = _unwrap(model)
    arch = get_model_arch(base)
    prefixes = list(arch.language_model) if not freeze_llm else []
    prefixes += list(arch.vision_tower) if not freeze_vit else []
    prefixes += list(arch.aligner) if not freeze_aligner else []
    alternatives = []
    for prefix in prefixes:
        rejected = [a for a in arch.aligner if a.startswith(prefix + ".")]
        part = _submodule(base, prefix)
        patterns = [] if isinstance(part, nn.Linear) else _linear_patterns(part, prefix, rejected, arch.lm_head)
        if not patterns:  # e.g. "lm_head" itself: a Linear, but the output head is never targeted
            continue
        alternatives.append(f"{re.escape(prefix)}\\.({'|'.join(patterns)})")
    if not alternatives:
        raise ValueError(f"multimodal_target_regex: the enabled parts {prefixes} hold no nn.Linear layer to target.")
    return f"^({'|'.join(alternatives)})$"


# ----------------------------------------------------------------------------------------------
# lora_llm: LoRA on the LLM, full training of the vision tower and aligner
# ----------------------------------------------------------------------------------------------


def _set_vit_aligner_trainable(model: nn.Module, trainable: bool) -> None:
    base = _unwrap(model)
    arch = get_model_arch(base)
    for prefix in arch.vision_tower + arch.aligner:
        _submodule(base, prefix).requires_grad_(trainable)


def prepare_lora_llm(model: nn.Module, *, r: int = 8, lora_alpha: float = 32, lora_dropout: float = 0.05,
                     adapter_name: str = "default", **lora_kwargs: Any):
    """ms-swift's ``lora_llm`` tuner: LoRA (``all-linear`` of the LLM; ms-swift's ``lora_rank=8,
    lora_alpha=32``) plus full training of the vision tower and the aligner. Returns a SwiftModel."""
    config = LoRAConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                        target_modules=multimodal_target_regex(model), **lora_kwargs)
    swift_model = Swift.prepare_model(model, {adapter_name: config})
    _set_vit_aligner_trainable(swift_model, True)
    return swift_model


def save_lora_llm(model: nn.Module, save_directory: str | os.PathLike) -> None:
    """Save the LoRA adapter(s) (``SwiftModel.save_pretrained``) and, beside them, the trainable
    vision-tower and aligner weights as ``vit.safetensors`` (names as in the base model)."""
    base = _unwrap(model)
    owner = part_of(base)
    full = {n: p.detach().cpu().contiguous() for n, p in base.named_parameters()
            if p.requires_grad and owner.get(id(p)) in ("vision_tower", "aligner")
            and not any(k in n.split(".") for k in ("lora_A", "lora_B"))}
    if not full:
        raise ValueError("save_lora_llm: no trainable vision-tower or aligner weight to save; was the model built "
                         "with prepare_lora_llm (or load_lora_llm(..., inference_mode=False))?")
    model.save_pretrained(str(save_directory))
    with StagedWrite(save_directory) as stage:
        stage.safetensors(full, VIT_WEIGHTS_NAME, metadata={"format": "pt", "written_by": "swiftlite.lora_llm"})


def load_lora_llm(model: nn.Module, model_id: str | os.PathLike, *, inference_mode: bool = True):
    """Load a :func:`save_lora_llm` checkpoint onto a fresh base ``model``: the adapter, then the
    vision-tower and aligner weights from ``vit.safetensors`` (trainable again unless
    ``inference_mode``). Every key of the file must name a parameter of the model."""
    from safetensors.torch import load_file

    path = os.path.join(str(model_id), VIT_WEIGHTS_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_lora_llm: {path} is missing; a lora_llm checkpoint holds the adapter and "
                                f"{VIT_WEIGHTS_NAME} (written by save_lora_llm).")
    state = load_file(path)
    params = dict(_unwrap(model).named_parameters())
    unknown = [k for k in state if k not in params]
    if unknown:
        raise KeyError(f"load_lora_llm: {VIT_WEIGHTS_NAME} holds {unknown[:3]} which the model lacks; "
                       "is this the base model the checkpoint was trained from?")
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(params[k].shape)]
    if wrong:  # checked before anything is loaded: nothing half-applied
        raise ValueError(f"load_lora_llm: {VIT_WEIGHTS_NAME}[{wrong[0]!r}] has shape {tuple(state[wrong[0]].shape)}, the "
                         f"model's is {tuple(params[wrong[0]].shape)}; is this the base model the checkpoint was trained from?")
    swift_model = Swift.from_pretrained(model, str(model_id), inference_mode=inference_mode)
    with torch.no_grad():
        for key, value in state.items():
            params[key].copy_(value.to(params[key].dtype))
    _set_vit_aligner_trainable(swift_model, not inference_mode)
    return swift_model


# ----------------------------------------------------------------------------------------------
# one learning rate per part
# ----------------------------------------------------------------------------------------------


def multimodal_param_groups(model: nn.Module, *, lr: float, weight_decay: float = 0.0,
                            vit_lr: float | None = None, aligner_lr: float | None = None) -> list[dict]:
    """Optimizer groups with ms-swift's per-part learning rates.

    Starts from :func:`swiftlite.train.trainable_param_groups` (so a tuner's own groups, e.g.
    LoRA+, are kept) and splits every group by part: vision-tower parameters get ``vit_lr``,
    aligner parameters ``aligner_lr`` (None: the group's own lr, as ms-swift's None means
    ``learning_rate``), the rest keep theirs; within a group the parts come in ms-swift's order
    (vit, aligner, llm). Pass the result to ``train(..., param_groups=groups)``.
    """
    for name, value in (("lr", lr), ("vit_lr", vit_lr), ("aligner_lr", aligner_lr)):
        if value is not None and not value > 0:
            raise ValueError(f"multimodal_param_groups({name}={value}): expected a positive learning rate or None.")
    owner = part_of(model)
    part_lr = {"vision_tower": vit_lr, "aligner": aligner_lr}
    out: list[dict] = []
    for group in trainable_param_groups(model, lr, weight_decay):
        split: dict[str, list] = {}
        for p in group["params"]:
            split.setdefault(owner.get(id(p), "language_model"), []).append(p)
        for part in sorted(split, key=("vision_tower", "aligner", "language_model", "generator").index):  # ms-swift's order
            g = {**group, "params": split[part], "part": part}
            g["lr"] = part_lr.get(part) or group.get("lr", lr)
            out.append(g)
    return out
