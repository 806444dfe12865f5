"""SwiftModel: a base model plus named adapters, with ms-swift's API.

    model = Swift.prepare_model(base, LoRAConfig(target_modules=["q_proj", "v_proj"]))
    model.save_pretrained("out")                 # out/default/adapter_config.json + adapter_model.safetensors
    model = Swift.from_pretrained(fresh_base, "out")

The base model stays a real transformers / diffusers / nn.Module object: tuners are injected into
it in place, `forward` / `generate` / any attribute fall through to it. Everything here is generic,
and the pieces live beside this file (api/) or in the kit below the tuners (core/):

- `core/params.py`: which parameters belong to an adapter, found through the `TunerLayer`s that own
  them, under canonical keys (the base model's own names, whatever other tuners wrap around);
- `checks.py`: everything checked before the model changes (names, configs, targets, keys);
- `core/snapshot.py`: all or nothing: `prepare_model`, `from_pretrained` and `add_weighted_adapter`
  either succeed or leave the model exactly as it was;
- `checkpoint.py`: `save_pretrained` / `from_pretrained` / `save_to_peft_format` and the layout.
- `offload.py`: an inactive adapter's weights moved to CPU or freed (`deactivate_adapter(offload=...)`).
"""
from __future__ import annotations

import contextlib
import warnings
import weakref
from typing import Any, Iterator

import torch
import torch.nn as nn

from ..core.config import SwiftConfig, get_tuner
from ..core.layer import TunerLayer, tuner_layers
from ..core.modules_to_save import wrap_modules_to_save
from ..core.params import Entry, adapter_table, base_state, extra_state_params
from ..core.snapshot import all_or_nothing
from ..core.targeting import remove_module, replace_module
from ..kernels.mixed_batch import adapter_batch
from . import checkpoint
from .checkpoint import read_adapters  # noqa: F401  (public here too)
from .checks import (DEFAULT_ADAPTER, RESERVED_ADAPTER_NAMES, as_config_dict, check_adapter_name,  # noqa: F401
                     check_state_dict, precheck, require_module)
from .offload import offload_adapter, offloaded_weights, reload_adapter, remove_files


class SwiftModel(nn.Module):
    """A model with tuners injected. Build it with `Swift.prepare_model`."""

    def __init__(
        self,
        model: nn.Module,
        config: SwiftConfig | dict[str, SwiftConfig] | None = None,
        extra_state_keys: list[str] | None = None,
        inference_mode: bool = False,
    ) -> None:
        super().__init__()
        require_module(model, "model")
        if isinstance(model, SwiftModel):
            raise TypeError("model is already a SwiftModel: use Swift.prepare_model(model, config) to add adapters")
        configs = as_config_dict(config) if config is not None else {}
        precheck(model, configs)  # every check that needs no change to the model, before any change
        with all_or_nothing(model):
            self.base_model = model
            self.training = model.training  # the wrapper takes the model's train / eval mode
            self.adapters: dict[str, SwiftConfig] = {}
            self.extra_state_keys: list[str] = list(extra_state_keys or [])
            self._offloaded: dict[str, str] = {}  # adapter -> temp file holding its weights (offload="meta")
            weakref.finalize(self, remove_files, self._offloaded)
            extra = self._extra_state_params()  # raises if a key matches nothing: before freezing
            for p in model.parameters():
                p.requires_grad_(False)
            for p in extra.values():
                p.requires_grad_(not inference_mode)
            for adapter_name, cfg in configs.items():
                self.add_adapter(adapter_name, cfg, inference_mode=inference_mode)

    # ---- attribute fall-through ----------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    @property
    def model(self) -> nn.Module:
        """The wrapped model, as in ms-swift (`swift_model.model.model.layers` for a LlamaForCausalLM)."""
        return self.base_model

    def forward(self, *args: Any, adapter_names: list[str] | None = None, **kwargs: Any) -> Any:
        if adapter_names is None:
            return self.base_model(*args, **kwargs)
        with adapter_batch(self, adapter_names):  # one adapter per sample (swiftlite/kernels/mixed_batch.py)
            return self.base_model(*args, **kwargs)

    def generate(self, *args: Any, adapter_names: list[str] | None = None, **kwargs: Any) -> Any:
        if adapter_names is None:
            return self.base_model.generate(*args, **kwargs)
        with adapter_batch(self, adapter_names, generating=True):
            return self.base_model.generate(*args, **kwargs)

    # ---- adding / deleting adapters ---------------------------------------------------------------
    def add_adapters(self, config: SwiftConfig | dict[str, SwiftConfig], inference_mode: bool = False) -> None:
        """Add several adapters: all of them, or (if one fails) none."""
        configs = as_config_dict(config)
        precheck(self.base_model, configs, existing=self.adapters)
        with self._all_or_nothing():
            for adapter_name, cfg in configs.items():
                self.add_adapter(adapter_name, cfg, inference_mode=inference_mode)

    def add_adapter(self, adapter_name: str, config: SwiftConfig, inference_mode: bool = False) -> None:
        """Inject one adapter. All or nothing: if injection fails, the model is left as it was."""
        precheck(self.base_model, {adapter_name: config}, existing=self.adapters)
        tuner = get_tuner(config.swift_type)
        with self._all_or_nothing():
            self.adapters[adapter_name] = config
            tuner.inject(self.base_model, config, adapter_name)
            self._wrap_modules_to_save(config, adapter_name)
            for layer in self._layers_of(adapter_name):
                layer.set_adapter_active(adapter_name, True)
                layer.follow_base_training_mode()
            for p in self.adapter_parameters(adapter_name).values():
                p.requires_grad_(not inference_mode)

    def _all_or_nothing(self) -> contextlib.AbstractContextManager[None]:
        return all_or_nothing(self.base_model, owner=self)

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter completely; the model computes as before it was added."""
        self._check_known(adapter_name)
        self._remove_adapter_modules(adapter_name)
        del self.adapters[adapter_name]
        remove_files({adapter_name: self._offloaded.pop(adapter_name, None)})

    def _remove_adapter_modules(self, adapter_name: str) -> None:
        # Deepest layers first, so an outer wrapper is unwrapped after its inner ones.
        for name, layer in sorted(tuner_layers(self.base_model), key=lambda item: -item[0].count(".")):
            if adapter_name not in layer.adapter_names:
                continue
            layer.delete_adapter(adapter_name)
            if not layer.adapter_names:
                self._unwrap(name, layer)

    def _unwrap(self, name: str, layer: TunerLayer) -> None:
        """Put back what the layer wrapped (or drop it, for an inserted block)."""
        replacement = layer.unwrap()
        if replacement is None:
            remove_module(self.base_model, name)
        else:
            replace_module(self.base_model, name, replacement)

    def _wrap_modules_to_save(self, config: SwiftConfig, adapter_name: str) -> None:
        wrap_modules_to_save(self.base_model, config, adapter_name)

    # ---- which parameters belong to an adapter (params.py) -----------------------------------------
    def _layers_of(self, adapter_name: str) -> list[TunerLayer]:
        return [layer for _, layer in tuner_layers(self.base_model) if adapter_name in layer.adapter_names]

    def _adapter_table(self) -> dict[str, dict[str, Entry]]:
        """{adapter: {canonical key: entry}} for every adapter of this model."""
        return adapter_table(self.base_model, self.adapters)

    def adapter_parameters(self, adapter_name: str) -> dict[str, nn.Parameter]:
        """{canonical key: parameter} of one adapter (the keys `state_dict(adapter_name=...)` uses)."""
        self._check_known(adapter_name)
        return {k: e.param for k, e in self._adapter_table()[adapter_name].items()}

    def _adapter_named_parameters(self, adapter_name: str) -> Iterator[tuple[str, nn.Parameter]]:
        """Kept for older callers: `adapter_parameters(adapter_name).items()`."""
        yield from self.adapter_parameters(adapter_name).items()

    def _base_state(self, params_only: bool = True) -> dict[str, torch.Tensor]:
        """The base model's own weights by canonical name (tuner parameters left out)."""
        return base_state(self.base_model, self._adapter_table(), params_only)

    def _has_tuner_weights(self) -> bool:
        """ms-swift's `has_additional_modules`: whether any adapter owns weights (NEFTune owns none)."""
        return not self.adapters or bool(self._offloaded) or any(self._adapter_table().values())

    def _extra_state_params(self) -> dict[str, nn.Parameter]:
        return extra_state_params(self._base_state(), self.extra_state_keys) if self.extra_state_keys else {}

    def _extra_state_names(self) -> list[str]:
        return list(self._extra_state_params())

    def _check_known(self, adapter_name: str) -> None:
        if adapter_name not in self.adapters:
            raise ValueError(f"adapter_name={adapter_name!r} is unknown; this model has {list(self.adapters)}")

    # ---- state dicts -----------------------------------------------------------------------------
    def state_dict(self, *args: Any, adapter_name: str | None = None, peft_format: bool = False, **kwargs: Any):
        """Tuner weights only (ms-swift semantics): one adapter, or all adapters plus extra states.

        Keys are canonical names inside the base model, e.g. `layers.0.q_proj.lora_A.default.weight`.
        An adapter offloaded to "meta" is read back from its temporary file. When no adapter has
        weights (NEFTune alone: the model is fully fine-tuned), it is the base model's whole state dict,
        as in ms-swift."""
        if not self._has_tuner_weights():
            return {k: t.detach() for k, t in self._base_state(params_only=False).items()}
        names = [adapter_name] if adapter_name else list(self.adapters)
        table = self._adapter_table()
        out: dict[str, torch.Tensor] = {}
        for name in names:
            self._check_known(name)
            out.update({k: e.param.detach() for k, e in table[name].items()})
            out.update(offloaded_weights(self, name))
        if adapter_name is None:
            out.update({k: p.detach() for k, p in self._extra_state_params().items()})
        return out

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True, adapter_name: str | None = None):
        """Load tuner weights. Every key and shape is checked first; on a mismatch nothing is loaded
        and the error names the first offending key."""
        names = [adapter_name] if adapter_name else list(self.adapters)
        for name in names:
            self._check_known(name)
            if name in self._offloaded:
                reload_adapter(self, name)
        table = self._adapter_table()
        params = {k: e.param for name in names for k, e in table[name].items()}
        if adapter_name is None:
            params.update(self._extra_state_params())
        if not self._has_tuner_weights():  # the base model's whole state dict, as `state_dict` returns it
            params = self._base_state(params_only=False)
        check_state_dict(params, state_dict, strict)
        with torch.no_grad():
            for key, value in state_dict.items():
                if key in params:
                    params[key].copy_(value.to(params[key].dtype))

    # ---- save / load (checkpoint.py) ------------------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str,
        safe_serialization: bool = True,
        adapter_name: str | list[str] | None = None,
        peft_format: bool = False,
        **kwargs: Any,
    ) -> None:
        """Write each adapter to `save_directory/<adapter>/` (and extra states to `extra_states/`).

        `peft_format=True` writes PEFT's layout instead ("default" at the top, PEFT key names).
        A tuner without parameters writes only its config. If no adapter has parameters (a model
        tuned with NEFTune alone, i.e. fully fine-tuned), the base model itself is saved: through its
        own `save_pretrained` (transformers / diffusers), else as the top-level `adapter_model.safetensors`.
        The directory is replaced atomically (`io.StagedWrite`); files swiftlite does not write stay."""
        if not safe_serialization:
            raise ValueError("safe_serialization=False: swiftlite writes safetensors only")
        checkpoint.save(self, save_directory, adapter_name=adapter_name, peft_format=peft_format)

    @classmethod
    def from_pretrained(
        cls,
        model: nn.Module,
        model_id: str,
        adapter_name: str | list[str] | dict[str, str] | None = None,
        inference_mode: bool = True,
        revision: str | None = None,
        allow_pickle: bool = False,
        **kwargs: Any,
    ) -> "SwiftModel":
        """Load saved adapters onto `model` (a base model or a SwiftModel to add them to).

        `adapter_name`: None (all found), a name, a list, or {saved_name: new_name} (ms-swift's
        order: the folder to read, the name to load it as). Reads the
        layout `dir/<adapter>/`, the older one with "default" at the top, and PEFT's. All or
        nothing: if anything fails, `model` is left as it was."""
        return checkpoint.load(cls, model, model_id, adapter_name=adapter_name, inference_mode=inference_mode,
                               revision=revision, allow_pickle=allow_pickle, **kwargs)

    # ---- activation ------------------------------------------------------------------------------
    def activate_adapter(self, adapter_name: str) -> None:
        self._check_known(adapter_name)
        reload_adapter(self, adapter_name)
        for layer in self._layers_of(adapter_name):
            layer.set_adapter_active(adapter_name, True)

    def deactivate_adapter(self, adapter_name: str, offload: str | None = None) -> None:
        """Switch an adapter off; `offload="cpu"` moves its weights to CPU, `"meta"` frees them
        (kept in a temporary safetensors file until it is activated again or deleted)."""
        self._check_known(adapter_name)
        if offload not in (None, "cpu", "meta"):
            raise ValueError(f"offload={offload!r}: expected None, 'cpu' or 'meta'")
        layers = self._layers_of(adapter_name)
        if any(adapter_name in layer.merged_adapters for layer in layers):
            raise ValueError(f"adapter {adapter_name!r} is merged into the weights: call unmerge() before deactivating it")
        for layer in layers:
            layer.set_adapter_active(adapter_name, False)
        if offload:
            offload_adapter(self, adapter_name, offload)

    def set_active_adapters(self, adapter_names: str | list[str], offload: str | None = None) -> None:
        """Activate exactly these adapters and deactivate the rest."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        for name in names:
            self._check_known(name)
        for name in self.adapters:
            if name not in names:
                self.deactivate_adapter(name, offload=offload)
        for name in names:
            self.activate_adapter(name)

    @property
    def active_adapters(self) -> list[str]:
        return [n for n in self.adapters if any(layer.is_active(n) for layer in self._layers_of(n))]

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        """Inside the block the model computes as the base model; the previous state returns after."""
        layers = [layer for _, layer in tuner_layers(self.base_model)]
        merged = sorted({n for layer in layers for n in layer.merged_adapters})
        if merged:
            raise ValueError(f"disable_adapter: adapters {merged} are merged into the weights; call unmerge() first")
        before = [(layer, {n: layer.is_active(n) for n in layer.adapter_names}) for layer in layers]
        try:
            for layer, state in before:
                for n in state:
                    layer.set_adapter_active(n, False)
            yield
        finally:
            for layer, state in before:
                for n, active in state.items():
                    layer.set_adapter_active(n, active)

    # ---- merging ---------------------------------------------------------------------------------
    def merge(self, adapter_name: str | list[str] | None = None, safe_merge: bool = True) -> None:
        """Fold active adapters (or the named ones) into the base weights; forward skips them after.

        Merging twice is a no-op with a warning. Adapters whose method cannot merge are left as
        parallel modules (warned). With `safe_merge`, NaN/inf results abort the whole merge."""
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name or self.active_adapters)
        for name in names:
            self._check_known(name)
            if name in self._offloaded:
                raise ValueError(f"adapter {name!r} is offloaded to 'meta' (deactivate_adapter(offload='meta')): "
                                 f"call activate_adapter({name!r}) before merging it")
        done: list[tuple[TunerLayer, str]] = []
        try:
            for name in names:
                tuner = get_tuner(self.adapters[name].swift_type)
                if not tuner.mergeable:
                    warnings.warn(f"adapter {name!r} ({type(self.adapters[name]).__name__}) is not mergeable: "
                                  f"{tuner.not_mergeable_reason} It stays a parallel module.", stacklevel=2)
                    continue
                layers = self._layers_of(name)
                if all(name in layer.merged_adapters for layer in layers):
                    warnings.warn(f"adapter {name!r} is already merged; nothing to do", stacklevel=2)
                    continue
                for layer in layers:
                    if name not in layer.merged_adapters and layer.mergeable:
                        layer.merge_adapter(name, safe_merge=safe_merge)
                        done.append((layer, name))
        except BaseException:
            for layer, name in reversed(done):
                layer.unmerge_adapter(name)
            raise

    def unmerge(self, adapter_name: str | list[str] | None = None) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else (adapter_name or list(self.adapters))
        for _, layer in tuner_layers(self.base_model):
            for name in reversed(list(layer.merged_adapters)):
                if name in names and name in layer.merged_adapters:
                    layer.unmerge_adapter(name)

    def merge_and_unload(self, safe_merge: bool = True) -> nn.Module:
        """Merge the active adapters and return the plain base model with every tuner removed."""
        blockers = {n: c for n, c in self.adapters.items() if not get_tuner(c.swift_type).mergeable}
        if blockers:
            reasons = "; ".join(f"{n} ({type(c).__name__}): {get_tuner(c.swift_type).not_mergeable_reason}" for n, c in blockers.items())
            raise ValueError(f"merge_and_unload: cannot unload non-mergeable adapters: {reasons} "
                             f"Delete them first with delete_adapter().")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.merge(safe_merge=safe_merge)
        for name, layer in sorted(tuner_layers(self.base_model), key=lambda item: -item[0].count(".")):
            self._unwrap(name, layer)
        self.adapters.clear()
        remove_files(self._offloaded)
        self._offloaded.clear()
        return self.base_model

    # ---- training helpers ------------------------------------------------------------------------
    def get_trainable_parameters(self) -> str:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return (f"trainable params: {trainable / 1e6:.4f}M || all params: {total / 1e6:.4f}M || "
                f"trainable%: {100 * trainable / max(total, 1):.4f}%")

    def print_trainable_parameters(self) -> None:
        print(self.get_trainable_parameters())

    def create_optimizer_param_groups(self, **defaults: Any) -> list[dict[str, Any]]:
        """Optimizer groups: tuner-specific ones (e.g. LoRA+ gives B a larger lr) plus one for the rest."""
        groups: list[dict[str, Any]] = []
        claimed: set[int] = set()
        for name, config in self.adapters.items():
            params = {k: p for k, p in self.adapter_parameters(name).items() if p.requires_grad}
            custom = get_tuner(config.swift_type).optimizer_param_groups(self.base_model, config, params, **defaults)
            if custom:
                groups += custom
                claimed |= {id(p) for g in custom for p in g["params"]}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in claimed]
        if rest:
            groups.append({"params": rest, **defaults})
        return groups

    def add_weighted_adapter(self, adapters: list[str], weights: list[float], adapter_name: str, **kwargs: Any) -> None:
        """Combine adapters of one method into a new one (LoRA: `combination_type` 'linear' or 'svd').

        All or nothing: if the combination fails, or yields NaN/inf weights, no adapter is added."""
        for name in adapters:
            self._check_known(name)
        types = {self.adapters[n].swift_type for n in adapters}
        if len(types) != 1:
            raise ValueError(f"adapters: all must be of one method, got {sorted(types)}")
        tuner = get_tuner(types.pop())
        if not hasattr(tuner, "add_weighted_adapter"):
            raise ValueError(f"add_weighted_adapter: {tuner.config_class.__name__} does not support combining adapters")
        if len(weights) != len(adapters):
            raise ValueError(f"weights: need one weight per adapter ({len(adapters)}), got {len(weights)}")
        with self._all_or_nothing():
            tuner.add_weighted_adapter(self, adapters, weights, adapter_name, **kwargs)
            for key, p in self.adapter_parameters(adapter_name).items():
                if p.is_floating_point() and not torch.isfinite(p).all():
                    raise ValueError(f"add_weighted_adapter: the combination put NaN/inf into {key!r} (are the "
                                     f"weights of {adapters} finite?); no adapter was added")

    def __repr__(self) -> str:
        return f"SwiftModel(adapters={list(self.adapters)}, base_model={type(self.base_model).__name__})"


class Swift:
    """ms-swift's entry points."""

    @staticmethod
    def prepare_model(model: nn.Module, config: Any, **kwargs: Any):
        """Inject `config` (a SwiftConfig or {adapter_name: config}) into `model`.

        A PEFT config goes through PEFT itself and returns a PeftModel (as in ms-swift). All or
        nothing: if one adapter fails, none is added and `model` is left as it was."""
        require_module(model, "model")
        if config is None:
            raise TypeError("config: expected a SwiftConfig (e.g. LoRAConfig(target_modules=[...])) or "
                            "{adapter_name: config}, got None")
        if type(config).__module__.startswith("peft"):
            import peft

            return peft.get_peft_model(model, config, **kwargs)
        if isinstance(model, SwiftModel):
            unknown = set(kwargs) - {"inference_mode", "extra_state_keys"}
            if unknown:
                raise TypeError(f"prepare_model: unexpected arguments {sorted(unknown)}")
            with model._all_or_nothing():
                if kwargs.get("extra_state_keys"):
                    model.extra_state_keys += list(kwargs["extra_state_keys"])
                    for p in model._extra_state_params().values():
                        p.requires_grad_(not kwargs.get("inference_mode", False))
                model.add_adapters(config, inference_mode=kwargs.get("inference_mode", False))
            return model
        return SwiftModel(model, config, **kwargs)

    @staticmethod
    def from_pretrained(model: nn.Module, model_id: str, adapter_name=None, inference_mode: bool = True, **kwargs: Any):
        return SwiftModel.from_pretrained(model, model_id, adapter_name=adapter_name, inference_mode=inference_mode, **kwargs)

    @staticmethod
    def merge(model: SwiftModel, **kwargs: Any) -> None:
        model.merge(**kwargs)

    @staticmethod
    def unmerge(model: SwiftModel, **kwargs: Any) -> None:
        model.unmerge(**kwargs)

    @staticmethod
    def merge_and_unload(model: SwiftModel, **kwargs: Any) -> nn.Module:
        return model.merge_and_unload(**kwargs)

    @staticmethod
    def save_to_peft_format(ckpt_dir: str, output_dir: str) -> None:
        """Convert a saved LoRA checkpoint directory into PEFT's format (renaming only).

        "default" goes to the top of `output_dir`, other adapters to sub-folders, as PEFT saves them;
        other files of `ckpt_dir` (a README, training arguments) are copied along, as ms-swift does.
        Idempotent: a directory already in PEFT's format converts to itself, and `output_dir` may be
        `ckpt_dir`. Raises AssertionError (as ms-swift) for a tuner PEFT cannot load, or extra states."""
        checkpoint.save_to_peft_format(ckpt_dir, output_dir)
