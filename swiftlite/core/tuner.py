"""Tuner: the "how" of a tuning method — which modules it attaches to and what it puts there.

A tuner file defines a config dataclass, one or more `TunerLayer` modules, and a `Tuner` subclass
tying them together, then calls `register_tuner`. For the common case — wrap every matched module
in a layer class — setting `config_class`, `layer_class` and `target_types` is enough: the default
`match` and `inject` below do the rest. Tuners that attach differently (insert new blocks, hook
embeddings) override `inject`.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch.nn as nn

from . import peft_format
from .config import SwiftConfig
from .layer import TunerLayer
from .targeting import match_modules, replace_module


class Tuner:
    config_class: ClassVar[type[SwiftConfig]]
    layer_class: ClassVar[type[TunerLayer] | None] = None
    # Module types the default `match` accepts (None: any module).
    target_types: ClassVar[tuple[type, ...] | None] = None
    # Promise checked by the conformance kit: output == base output right after injection.
    identity_at_init: ClassVar[bool] = True
    # Can its weights be folded into the base (merge / merge_and_unload)? If not, say why.
    mergeable: ClassVar[bool] = False
    not_mergeable_reason: ClassVar[str] = ""
    # PEFT's name for the same method, if its checkpoints convert by renaming; such a tuner also
    # sets `peft_spec` (a `core.peft_format.PeftSpec`), and `to_peft` / `from_peft` below do the rest.
    peft_type: ClassVar[str | None] = None
    peft_spec: ClassVar[Any] = None

    @classmethod
    def supported_types(cls) -> tuple[type, ...] | None:
        """Override when the accepted types need a lazy import (e.g. transformers' Conv1D)."""
        return cls.target_types

    @classmethod
    def match(cls, model: nn.Module, config: SwiftConfig) -> list[str]:
        """The modules `config` attaches to; raises if the target does not fit the model."""
        return match_modules(
            model, config.target_modules, types=cls.supported_types(), config_name=type(config).__name__
        )

    @classmethod
    def check(cls, model: nn.Module, config: SwiftConfig, names: list[str]) -> None:
        """Raise ValueError naming the field when `config` cannot work on the matched modules `names`
        (a dim that is not their hidden size, an argument position they do not have, ...).
        `prepare_model` calls it right after `match`, before it changes anything; a tuner file
        overrides it (the default checks nothing)."""

    @classmethod
    def inject(cls, model: nn.Module, config: SwiftConfig, adapter_name: str) -> None:
        """Wrap each matched module in `layer_class`, or add the adapter to an existing one."""
        for name in cls.match(model, config):
            module = model.get_submodule(name)
            if isinstance(module, cls.layer_class):
                module.add_adapter(adapter_name, config)
            else:
                layer = cls.layer_class(module)
                layer.add_adapter(adapter_name, config)
                replace_module(model, name, layer)

    @classmethod
    def to_saved_state(cls, model: nn.Module, config: SwiftConfig, weights: dict[str, Any], adapter_name: str
                       ) -> dict[str, Any]:
        """The checkpoint keys of one adapter's weights (`save_pretrained` calls it): canonical keys in
        (`SwiftModel.state_dict(adapter_name=...)`), the keys ms-swift writes out. The identity unless the
        tuner's modules sit elsewhere than ms-swift's (LLaMA-Pro); such a tuner also overrides
        `from_saved_state`. `model` is the base model with its tuners injected."""
        return weights

    @classmethod
    def from_saved_state(cls, model: nn.Module, config: SwiftConfig, weights: dict[str, Any], adapter_name: str
                         ) -> dict[str, Any]:
        """Inverse of `to_saved_state` (`from_pretrained` calls it before loading the weights)."""
        return weights

    @classmethod
    def to_peft(cls, config: SwiftConfig, weights: dict[str, Any], adapter_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """(PEFT adapter_config.json dict, PEFT-named weights) of one adapter (see core/peft_format.py)."""
        return peft_format.to_peft(cls, config, weights, adapter_name)

    @classmethod
    def from_peft(cls, peft_config: dict[str, Any], weights: dict[str, Any], adapter_name: str
                  ) -> tuple[SwiftConfig, dict[str, Any]]:
        """Inverse of `to_peft`: (config, swiftlite-named weights) from a PEFT checkpoint."""
        return peft_format.from_peft(cls, peft_config, weights, adapter_name)

    @classmethod
    def optimizer_param_groups(
        cls, model: nn.Module, config: SwiftConfig, params: dict[str, nn.Parameter], **defaults: Any
    ) -> list[dict[str, Any]] | None:
        """Param groups for this adapter's trainable `params` (name -> parameter); None = one group."""
        return None


# ---- static shape facts about a module, for `check` ------------------------------------------------
def feature_width(module: nn.Module, side: str) -> tuple[int, str] | None:
    """(size of the last axis, name of the layer that says so) of `module`'s input (`side="in"`) or
    output (`side="out"`), read from its weights without running it; None when unknown.

    A layer with weights answers for itself (Linear, transformers' Conv1D, Embedding, LayerNorm,
    RMSNorm); a block answers with its first ("in") or last ("out") such layer in registration order,
    which is how transformers and diffusers blocks are written (LlamaDecoderLayer ends with
    post_attention_layernorm, BertLayer with output.LayerNorm). Blocks with convolutions answer None:
    their last axis is spatial, not a feature axis. Tuner layers are looked through.
    """
    leaves = list(_weight_leaves(module, ""))
    if not leaves or any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for _, m in leaves):
        return None
    for name, leaf in (leaves if side == "in" else reversed(leaves)):
        width = _leaf_width(leaf, side)
        if width is not None:
            return width, name
    return None


def said_by(found: tuple[int, str]) -> str:
    """' (its layer "x.y" says so)' for an error message about a `feature_width` answer."""
    return f" (its layer {found[1]!r} says so)" if found[1] else ""


def _weight_leaves(module: nn.Module, prefix: str):
    if isinstance(module, TunerLayer) and module.base_layer is not None:
        yield from _weight_leaves(module.base_layer, prefix)
        return
    children = list(module.named_children())
    if not children:
        yield prefix, module
    for name, child in children:
        yield from _weight_leaves(child, f"{prefix}.{name}" if prefix else name)


def _leaf_width(leaf: nn.Module, side: str) -> int | None:
    if isinstance(leaf, nn.Linear):
        return leaf.in_features if side == "in" else leaf.out_features
    if isinstance(leaf, nn.Embedding):
        return None if side == "in" else leaf.embedding_dim
    if isinstance(leaf, nn.LayerNorm) and leaf.normalized_shape:
        return leaf.normalized_shape[-1]
    weight = getattr(leaf, "weight", None)
    if type(leaf).__name__ == "Conv1D" and isinstance(weight, nn.Parameter) and weight.dim() == 2:
        return weight.shape[0] if side == "in" else weight.shape[1]  # transformers' Conv1D: (in, out)
    if type(leaf).__name__.endswith("RMSNorm") and isinstance(weight, nn.Parameter) and weight.dim() == 1:
        return weight.shape[0]
    return None


def forward_arguments(module: nn.Module, method_name: str = "forward") -> tuple[list[str], bool]:
    """(names of the explicit arguments of `module.<method_name>`, whether it also takes **kwargs)."""
    import inspect

    target = module.base_layer if isinstance(module, TunerLayer) and module.base_layer is not None else module
    try:
        signature = inspect.signature(getattr(target, method_name))
    except (TypeError, ValueError, AttributeError):
        return [], True  # unknown: accept anything
    params = signature.parameters.values()
    names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return names, any(p.kind == p.VAR_KEYWORD for p in params)



class _ProbeDone(Exception):
    pass


def sample_inputs(model: nn.Module) -> dict[str, Any] | None:
    """A one-example input built from the model's own config, or None where none can be known:
    transformers token models (their `dummy_inputs`), transformers image models (`pixel_values` of
    `num_channels` x `image_size`²) and diffusers' conditional U-Nets (`sample`, `timestep`,
    `encoder_hidden_states`). A plain nn.Module does not say what it takes: its first forward reports."""
    import torch

    config = getattr(model, "config", None)
    main_input = getattr(model, "main_input_name", None)
    if main_input == "input_ids":
        inputs = getattr(model, "dummy_inputs", None)
        return inputs if isinstance(inputs, dict) else None
    if main_input == "pixel_values" and isinstance(getattr(config, "image_size", None), int):
        size, channels = config.image_size, getattr(config, "num_channels", 3)
        return {"pixel_values": torch.zeros(1, channels, size, size)}  # (B, C, H, W)
    if type(model).__name__ == "UNet2DConditionModel" and isinstance(getattr(config, "sample_size", None), int):
        size = config.sample_size
        return {"sample": torch.zeros(1, config.in_channels, size, size), "timestep": torch.tensor([1]),
                "encoder_hidden_states": torch.zeros(1, 1, config.cross_attention_dim)}  # (B, T, D_cross)
    return None


def probe_outputs(model: nn.Module, names: list[str]) -> dict[str, Any] | None:
    """One dry forward pass to see what the modules `names` return, for checks that the weights
    cannot answer (which item of a tuple holds the hidden states). {name: output} of each module's
    first call, or None when no sample input can be built from the model (see `sample_inputs`) or
    the pass fails. The pass stops as soon as every module was seen, runs in eval
    mode without gradients, and leaves the train/eval flags and the global RNG state as they were."""
    import torch

    inputs = sample_inputs(model)
    if inputs is None or any(p.is_meta for p in model.parameters()):
        return None
    seen: dict[str, Any] = {}

    def record(name: str):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            seen.setdefault(name, output)
            if len(seen) == len(names):
                raise _ProbeDone

        return hook

    handles = [model.get_submodule(n).register_forward_hook(record(n)) for n in names]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()  # no dropout, and no BatchNorm statistics updated by the probe
    try:
        device, dtype = next(model.parameters()).device, next(model.parameters()).dtype
        inputs = {k: v.to(device, dtype) if v.is_floating_point() else v.to(device) for k, v in inputs.items()}
        with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            model(**inputs)
    except _ProbeDone:
        pass
    except Exception:  # the probe is a best effort: the real forward will report its own error
        return None
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return seen


def check_output_position(config_name: str, field_name: str, pos: Any, module_name: str, module: nn.Module,
                          output: Any) -> None:
    """Raise ValueError when `pos` (an int index or str key) does not pick a tensor out of `output`."""
    import torch

    if isinstance(output, torch.Tensor):
        return  # a single tensor: the position is not needed
    where = f"{config_name}.{field_name}={pos!r}: {module_name!r} ({type(module).__name__}) returns"
    if isinstance(output, dict):  # dicts and transformers' ModelOutput
        keys = list(output.keys())
        key = pos if isinstance(pos, str) else (keys[pos] if isinstance(pos, int) and -len(keys) <= pos < len(keys) else None)
        if key is None or key not in output:
            raise ValueError(f"{where} a {type(output).__name__} with keys {keys}; name one of them")
        item = output[key]
    elif isinstance(output, (tuple, list)):
        if not isinstance(pos, int) or not -len(output) <= pos < len(output):
            raise ValueError(f"{where} a {type(output).__name__} of {len(output)} items; give an int index "
                             f"below {len(output)}")
        item = output[pos]
    else:
        return
    if not isinstance(item, torch.Tensor):
        kinds = [type(x).__name__ for x in (output.values() if isinstance(output, dict) else output)]
        raise ValueError(f"{where} {kinds} (seen in a dry run with the model's dummy inputs), and that item is "
                         f"{type(item).__name__}, not the hidden states; point {field_name} at a tensor")
