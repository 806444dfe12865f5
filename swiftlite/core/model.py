"""SwiftModel: a base model plus named adapters, with ms-swift's API.

    model = Swift.prepare_model(base, LoRAConfig(target_modules=["q_proj", "v_proj"]))
    model.save_pretrained("out")                 # out/adapter_config.json + adapter_model.safetensors
    model = Swift.from_pretrained(fresh_base, "out")

The base model stays a real transformers / diffusers / nn.Module object: tuners are injected into
it in place, `forward` / `generate` / any attribute fall through to it. Everything here is generic:
it finds each adapter's parameters through the `TunerLayer`s that own them (`core/layer.py`).
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import warnings
from typing import Any, Iterator

import torch
import torch.nn as nn

from . import io
from .config import TUNERS, SwiftConfig, get_tuner
from .layer import TunerLayer, tuner_layers
from .targeting import name_matches, replace_module

DEFAULT_ADAPTER = "default"


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
        if isinstance(model, SwiftModel):
            raise TypeError("model is already a SwiftModel: use Swift.prepare_model(model, config) to add adapters")
        self.base_model = model
        self.adapters: dict[str, SwiftConfig] = {}
        self.extra_state_keys: list[str] = list(extra_state_keys or [])
        self._offloaded: dict[str, str] = {}  # adapter -> temp file holding its weights (offload="meta")
        for p in model.parameters():
            p.requires_grad_(False)
        for name in self._extra_state_names():
            model.get_parameter(name).requires_grad_(not inference_mode)
        if config is not None:
            self.add_adapters(config, inference_mode=inference_mode)

    # ---- attribute fall-through ----------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_model":
                raise
            return getattr(self.base_model, name)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model.generate(*args, **kwargs)

    # ---- adding / deleting adapters ---------------------------------------------------------------
    def add_adapters(self, config: SwiftConfig | dict[str, SwiftConfig], inference_mode: bool = False) -> None:
        configs = config if isinstance(config, dict) else {DEFAULT_ADAPTER: config}
        for adapter_name, cfg in configs.items():
            self.add_adapter(adapter_name, cfg, inference_mode=inference_mode)

    def add_adapter(self, adapter_name: str, config: SwiftConfig, inference_mode: bool = False) -> None:
        """Inject one adapter. All or nothing: if injection fails, the model is left as it was."""
        if not isinstance(config, SwiftConfig):
            if type(config).__module__.startswith("peft"):
                raise TypeError("a PEFT config goes through PEFT: call Swift.prepare_model(model, peft_config)")
            raise TypeError(f"config: expected a SwiftConfig (e.g. LoRAConfig), got {type(config).__name__}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", adapter_name):
            raise ValueError(f"adapter_name={adapter_name!r}: use letters, digits, '_' or '-' (no dots)")
        if adapter_name in self.adapters:
            raise ValueError(f"adapter_name={adapter_name!r} already exists; pick another name or delete_adapter() it")
        config.validate()
        tuner = get_tuner(config.swift_type)
        tuner.match(self.base_model, config)  # raises before anything changes
        self.adapters[adapter_name] = config
        try:
            tuner.inject(self.base_model, config, adapter_name)
            self._wrap_modules_to_save(config, adapter_name)
        except BaseException:
            self._remove_adapter_modules(adapter_name)
            del self.adapters[adapter_name]
            raise
        for layer in self._layers_of(adapter_name):
            layer.set_adapter_active(adapter_name, True)
        for _, p in self._adapter_named_parameters(adapter_name):
            p.requires_grad_(not inference_mode)

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter completely; the model computes as before it was added."""
        self._check_known(adapter_name)
        self._remove_adapter_modules(adapter_name)
        del self.adapters[adapter_name]

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
            _remove_from_parent(self.base_model, name)
        else:
            replace_module(self.base_model, name, replacement)

    def _wrap_modules_to_save(self, config: SwiftConfig, adapter_name: str) -> None:
        from .modules_to_save import wrap_modules_to_save

        wrap_modules_to_save(self.base_model, config, adapter_name)

    # ---- which parameters belong to an adapter ---------------------------------------------------
    def _layers_of(self, adapter_name: str) -> list[TunerLayer]:
        return [layer for _, layer in tuner_layers(self.base_model) if adapter_name in layer.adapter_names]

    def _adapter_named_parameters(self, adapter_name: str) -> Iterator[tuple[str, nn.Parameter]]:
        for path, layer in tuner_layers(self.base_model):
            for rel, p in layer.adapter_parameters(adapter_name):
                yield f"{path}.{rel}", p

    def _extra_state_names(self) -> list[str]:
        if not self.extra_state_keys:
            return []
        names = [n for n, _ in self.base_model.named_parameters() if any(re.fullmatch(k, n) for k in self.extra_state_keys)]
        if not names:
            raise ValueError(f"extra_state_keys={self.extra_state_keys!r} matched no parameter of the base model")
        return names

    def _check_known(self, adapter_name: str) -> None:
        if adapter_name not in self.adapters:
            raise ValueError(f"adapter_name={adapter_name!r} is unknown; this model has {list(self.adapters)}")

    # ---- state dicts -----------------------------------------------------------------------------
    def state_dict(self, *args: Any, adapter_name: str | None = None, peft_format: bool = False, **kwargs: Any):
        """Tuner weights only (ms-swift semantics): one adapter, or all adapters plus extra states.

        Keys are names inside the base model, e.g. `layers.0.q_proj.lora_A.default.weight`.
        """
        names = [adapter_name] if adapter_name else list(self.adapters)
        out: dict[str, torch.Tensor] = {}
        for name in names:
            self._check_known(name)
            out.update({k: p.detach() for k, p in self._adapter_named_parameters(name)})
        if adapter_name is None:
            params = dict(self.base_model.named_parameters())
            out.update({k: params[k].detach() for k in self._extra_state_names()})
        return out

    def load_state_dict(self, state_dict: dict[str, torch.Tensor], strict: bool = True, adapter_name: str | None = None):
        """Load tuner weights. Every key and shape is checked first; on a mismatch nothing is loaded
        and the error names the first offending key."""
        params = dict(self._adapter_named_parameters(adapter_name)) if adapter_name else {
            k: p for name in self.adapters for k, p in self._adapter_named_parameters(name)
        }
        if adapter_name is None:
            base = dict(self.base_model.named_parameters())
            params.update({k: base[k] for k in self._extra_state_names()})
        _check_state_dict(params, state_dict, strict)
        with torch.no_grad():
            for key, value in state_dict.items():
                if key in params:
                    params[key].copy_(value.to(params[key].dtype))

    # ---- save / load -----------------------------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str,
        safe_serialization: bool = True,
        adapter_name: str | list[str] | None = None,
        peft_format: bool = False,
        **kwargs: Any,
    ) -> None:
        """Write each adapter (and extra states) in ms-swift's layout; optionally PEFT's format.

        All files are staged first and moved into place only when every one was written, so a
        failed save never leaves a half-overwritten checkpoint."""
        if not safe_serialization:
            raise ValueError("safe_serialization=False: swiftlite writes safetensors only")
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name or self.adapters)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory={save_directory!r} is a file; give a directory")
        with io.StagedWrite() as staged:
            for name in names:
                self._check_known(name)
                config = self.adapters[name]
                out = save_directory if name == DEFAULT_ADAPTER else os.path.join(save_directory, name)
                weights = self.state_dict(adapter_name=name)
                if peft_format:
                    tuner = get_tuner(config.swift_type)
                    if tuner.peft_type is None:
                        raise ValueError(f"peft_format=True: {type(config).__name__} has no PEFT equivalent (only LoRA does)")
                    config_dict, weights = tuner.to_peft(config, weights, name)
                else:
                    config_dict = config.to_dict()
                staged.json(config_dict, os.path.join(out, io.CONFIG_NAME))
                staged.safetensors(weights, os.path.join(out, io.WEIGHTS_NAME))
            extra = {k: v for k, v in self.state_dict().items() if k in set(self._extra_state_names())}
            if extra:
                staged.safetensors(extra, os.path.join(save_directory, io.EXTRA_STATES_DIR, io.WEIGHTS_NAME))

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

        `adapter_name`: None (all found), a name, a list, or {new_name: saved_name}."""
        import swiftlite.tuners  # noqa: F401  (fills the tuner registry)

        directory = io.resolve_checkpoint_dir(model_id, revision)
        found = _saved_adapters(directory)
        if not found:
            raise FileNotFoundError(f"{directory}: no {io.CONFIG_NAME} at the top or in a sub-folder")
        if adapter_name is None:
            mapping = {n: n for n in found}
        elif isinstance(adapter_name, str):
            mapping = {adapter_name: adapter_name}
        elif isinstance(adapter_name, dict):
            mapping = dict(adapter_name)
        else:
            mapping = {n: n for n in adapter_name}
        for new, saved in mapping.items():
            if saved not in found:
                raise ValueError(f"adapter_name: {saved!r} is not in {directory}; found {sorted(found)}")

        # Read and convert everything before touching the model.
        loaded: dict[str, tuple[SwiftConfig, dict[str, torch.Tensor]]] = {}
        for new, saved in mapping.items():
            raw = io.read_json(os.path.join(found[saved], io.CONFIG_NAME))
            weights = io.load_weights(found[saved], allow_pickle=allow_pickle)
            if "swift_type" not in raw and "peft_type" in raw:
                # A tuner that declares this peft_type converts the checkpoint (renaming only);
                # other PEFT methods are loaded by PEFT itself, as ms-swift does.
                tuner = next((t for t in TUNERS.values() if t.peft_type == raw["peft_type"]), None)
                if tuner is None:
                    import peft

                    if isinstance(model, SwiftModel):
                        raise ValueError(f"{found[saved]}: a PEFT {raw['peft_type']} checkpoint cannot join a SwiftModel")
                    return peft.PeftModel.from_pretrained(model, found[saved], is_trainable=not inference_mode)
                config, weights = tuner.from_peft(raw, weights, new)
            else:
                config = SwiftConfig.from_dict(raw)
                weights = _rename_adapter(weights, saved, new)
            loaded[new] = (config, weights)

        swift_model = model if isinstance(model, SwiftModel) else cls(model)
        added: list[str] = []
        try:
            for new, (config, weights) in loaded.items():
                swift_model.add_adapter(new, config, inference_mode=inference_mode)
                added.append(new)
                swift_model.load_state_dict(weights, adapter_name=new)
            extra_dir = os.path.join(directory, io.EXTRA_STATES_DIR)
            if os.path.isdir(extra_dir):
                extra = io.load_weights(extra_dir, allow_pickle=allow_pickle)
                params = dict(swift_model.base_model.named_parameters())
                _check_state_dict({k: params[k] for k in extra if k in params}, extra, strict=False)
                missing = [k for k in extra if k not in params]
                if missing:
                    raise ValueError(f"extra_states: key {missing[0]!r} is not a parameter of this model")
                with torch.no_grad():
                    for k, v in extra.items():
                        params[k].copy_(v)
        except BaseException:
            for name in added:
                swift_model.delete_adapter(name)
            raise
        return swift_model

    # ---- activation ------------------------------------------------------------------------------
    def activate_adapter(self, adapter_name: str) -> None:
        self._check_known(adapter_name)
        self._reload_offloaded(adapter_name)
        for layer in self._layers_of(adapter_name):
            layer.set_adapter_active(adapter_name, True)

    def deactivate_adapter(self, adapter_name: str, offload: str | None = None) -> None:
        """Switch an adapter off; `offload="cpu"` moves its weights to CPU, `"meta"` frees them
        (kept in a temporary safetensors file until it is activated again)."""
        self._check_known(adapter_name)
        if offload not in (None, "cpu", "meta"):
            raise ValueError(f"offload={offload!r}: expected None, 'cpu' or 'meta'")
        layers = self._layers_of(adapter_name)
        if any(adapter_name in layer.merged_adapters for layer in layers):
            raise ValueError(f"adapter {adapter_name!r} is merged into the weights: call unmerge() before deactivating it")
        for layer in layers:
            layer.set_adapter_active(adapter_name, False)
        if offload == "meta" and adapter_name not in self._offloaded:
            fd, path = tempfile.mkstemp(suffix=".safetensors")
            os.close(fd)
            io.save_safetensors_atomic(self.state_dict(adapter_name=adapter_name), path)
            self._offloaded[adapter_name] = path
        if offload:
            self._move_adapter(adapter_name, torch.device(offload))

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

    def _move_adapter(self, adapter_name: str, device: torch.device) -> None:
        for layer in self._layers_of(adapter_name):
            for attr, item in list(layer.adapter_modules(adapter_name)):
                container = getattr(layer, attr)
                if isinstance(item, nn.Parameter):
                    data = torch.empty_like(item, device=device) if item.is_meta else item.to(device)  # meta has no data
                    container[adapter_name] = nn.Parameter(data, requires_grad=item.requires_grad)
                elif device.type == "meta" or any(p.device.type == "meta" for p in item.parameters()):
                    item.to_empty(device=device) if device.type != "meta" else item.to(device)
                else:
                    item.to(device)

    def _reload_offloaded(self, adapter_name: str) -> None:
        for layer in self._layers_of(adapter_name):
            device, _ = layer._base_device_dtype()
            if any(p.device != device for _, p in layer.adapter_parameters(adapter_name)):
                self._move_adapter(adapter_name, device)
        path = self._offloaded.pop(adapter_name, None)
        if path:
            self.load_state_dict(_load_file(path), adapter_name=adapter_name)
            os.remove(path)

    # ---- merging ---------------------------------------------------------------------------------
    def merge(self, adapter_name: str | list[str] | None = None, safe_merge: bool = True) -> None:
        """Fold active adapters (or the named ones) into the base weights; forward skips them after.

        Merging twice is a no-op with a warning. Adapters whose method cannot merge are left as
        parallel modules (warned). With `safe_merge`, NaN/inf results abort the whole merge."""
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name or self.active_adapters)
        done: list[tuple[TunerLayer, str]] = []
        try:
            for name in names:
                self._check_known(name)
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
                        layer.merge(name, safe_merge=safe_merge)
                        layer.merged_adapters.append(name)
                        done.append((layer, name))
        except BaseException:
            for layer, name in reversed(done):
                layer.unmerge(name)
                layer.merged_adapters.remove(name)
            raise

    def unmerge(self, adapter_name: str | list[str] | None = None) -> None:
        names = [adapter_name] if isinstance(adapter_name, str) else (adapter_name or list(self.adapters))
        for _, layer in tuner_layers(self.base_model):
            for name in reversed(list(layer.merged_adapters)):
                if name in names:
                    layer.unmerge(name)
                    layer.merged_adapters.remove(name)

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
            params = {k: p for k, p in self._adapter_named_parameters(name) if p.requires_grad}
            custom = get_tuner(config.swift_type).optimizer_param_groups(self.base_model, config, params, **defaults)
            if custom:
                groups += custom
                claimed |= {id(p) for g in custom for p in g["params"]}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in claimed]
        if rest:
            groups.append({"params": rest, **defaults})
        return groups

    def add_weighted_adapter(self, adapters: list[str], weights: list[float], adapter_name: str, **kwargs: Any) -> None:
        """Combine adapters of one method into a new one (LoRA: `combination_type` 'linear' or 'svd')."""
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
        tuner.add_weighted_adapter(self, adapters, weights, adapter_name, **kwargs)

    def __repr__(self) -> str:
        return f"SwiftModel(adapters={list(self.adapters)}, base_model={type(self.base_model).__name__})"


class Swift:
    """ms-swift's entry points."""

    @staticmethod
    def prepare_model(model: nn.Module, config: Any, **kwargs: Any):
        """Inject `config` (a SwiftConfig or {adapter_name: config}) into `model`.

        A PEFT config goes through PEFT itself and returns a PeftModel (as in ms-swift)."""
        if type(config).__module__.startswith("peft"):
            import peft

            return peft.get_peft_model(model, config, **kwargs)
        if isinstance(model, SwiftModel):
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
        """Convert a saved swiftlite LoRA checkpoint directory into PEFT's format (renaming only)."""
        import swiftlite.tuners  # noqa: F401

        found = _saved_adapters(ckpt_dir)
        if not found:
            raise FileNotFoundError(f"ckpt_dir={ckpt_dir!r}: no {io.CONFIG_NAME} found")
        with io.StagedWrite() as staged:
            for name, folder in found.items():
                config = SwiftConfig.from_dict(io.read_json(os.path.join(folder, io.CONFIG_NAME)))
                tuner = get_tuner(config.swift_type)
                if tuner.peft_type is None:
                    raise ValueError(f"{folder}: {type(config).__name__} has no PEFT format (only LoRA does)")
                config_dict, weights = tuner.to_peft(config, io.load_weights(folder), name)
                out = output_dir if name == DEFAULT_ADAPTER else os.path.join(output_dir, name)
                staged.json(config_dict, os.path.join(out, io.CONFIG_NAME))
                staged.safetensors(weights, os.path.join(out, io.WEIGHTS_NAME))


# ---- helpers ------------------------------------------------------------------------------------
def _load_file(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def _saved_adapters(directory: str) -> dict[str, str]:
    """{adapter name: folder} of the adapters saved under `directory`."""
    found = {}
    if os.path.exists(os.path.join(directory, io.CONFIG_NAME)):
        found[DEFAULT_ADAPTER] = directory
    for entry in sorted(os.listdir(directory)):
        sub = os.path.join(directory, entry)
        if entry != io.EXTRA_STATES_DIR and os.path.isfile(os.path.join(sub, io.CONFIG_NAME)):
            found[entry] = sub
    return found


def _rename_adapter(weights: dict[str, torch.Tensor], saved: str, new: str) -> dict[str, torch.Tensor]:
    if saved == new:
        return weights
    return {re.sub(rf"\.{re.escape(saved)}(\.|$)", rf".{new}\1", k, count=1): v for k, v in weights.items()}


def _check_state_dict(params: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor], strict: bool) -> None:
    for key, value in state_dict.items():
        if key not in params:
            if strict:
                raise ValueError(f"checkpoint key {key!r} has no matching tuner parameter in this model "
                                 f"(was it saved from a different model or config?)")
            continue
        if tuple(value.shape) != tuple(params[key].shape):
            raise ValueError(f"checkpoint key {key!r}: shape {tuple(value.shape)} does not fit the model's "
                             f"{tuple(params[key].shape)} (different rank or hidden size?)")
    if strict:
        missing = [k for k in params if k not in state_dict]
        if missing:
            raise ValueError(f"checkpoint is missing key {missing[0]!r} ({len(missing)} missing in all)")


def _remove_from_parent(model: nn.Module, name: str) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.ModuleList):
        keep = [m for key, m in parent._modules.items() if key != child]
        parent._modules.clear()
        for i, m in enumerate(keep):
            parent._modules[str(i)] = m
    else:
        delattr(parent, child)
