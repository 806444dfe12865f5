"""SwiftModel: a base model plus named adapters, with ms-swift's API.

    model = Swift.prepare_model(base, LoRAConfig(target_modules=["q_proj", "v_proj"]))
    model.save_pretrained("out")                 # out/default/adapter_config.json + adapter_model.safetensors
    model = Swift.from_pretrained(fresh_base, "out")

The base model stays a real transformers / diffusers / nn.Module object: tuners are injected into
it in place, `forward` / `generate` / any attribute fall through to it. Everything here is generic:
it finds each adapter's parameters through the `TunerLayer`s that own them (`core/layer.py`).

Parameter names are canonical: an adapter's keys are the base model's own module names, whatever
other tuners wrap around them. A LoRA on `encoder.layer.0.attention.self.query` is saved as
`encoder.layer.0.attention.self.query.lora_A.default.weight` even when an Adapter wraps
`encoder.layer.0` (the live path then runs through `encoder.layer.0.base_layer.…`): the
`base_layer` segment of another tuner's wrapper is dropped from every key.

All or nothing: `prepare_model`, `from_pretrained` and `add_weighted_adapter` either succeed or
leave the model exactly as it was — module tree, parameters, `requires_grad` flags, adapters and
the HF config — by restoring a snapshot taken before they start (`_Snapshot`).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import re
import tempfile
import warnings
import weakref
from typing import Any, Iterator, NamedTuple

import torch
import torch.nn as nn

from . import io
from .config import TUNERS, SwiftConfig, get_tuner
from .layer import TunerLayer, canonical_name, tuner_layers
from .peft_format import load_base_weights, split_base_weights
from .targeting import name_matches, replace_module

DEFAULT_ADAPTER = "default"
# Checkpoint folder names an adapter may not take.
RESERVED_ADAPTER_NAMES = frozenset({io.EXTRA_STATES_DIR})


class _Entry(NamedTuple):
    """One adapter parameter: canonical key = f"{layer}.{rel}" (see module docstring)."""

    param: nn.Parameter
    layer: str  # canonical name of the TunerLayer that owns it
    rel: str  # name inside that layer, e.g. "lora_A.default.weight"


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
        _require_module(model, "model")
        if isinstance(model, SwiftModel):
            raise TypeError("model is already a SwiftModel: use Swift.prepare_model(model, config) to add adapters")
        configs = _as_config_dict(config) if config is not None else {}
        _precheck(model, configs)  # every check that needs no change to the model, before any change
        snapshot = _Snapshot(model)
        try:
            self.base_model = model
            self.training = model.training  # the wrapper takes the model's train / eval mode
            self.adapters: dict[str, SwiftConfig] = {}
            self.extra_state_keys: list[str] = list(extra_state_keys or [])
            self._offloaded: dict[str, str] = {}  # adapter -> temp file holding its weights (offload="meta")
            weakref.finalize(self, _remove_files, self._offloaded)
            extra = self._extra_state_params()  # raises if a key matches nothing: before freezing
            for p in model.parameters():
                p.requires_grad_(False)
            for p in extra.values():
                p.requires_grad_(not inference_mode)
            for adapter_name, cfg in configs.items():
                self.add_adapter(adapter_name, cfg, inference_mode=inference_mode)
        except BaseException:
            snapshot.restore()
            raise

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

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        return self.base_model.generate(*args, **kwargs)

    # ---- adding / deleting adapters ---------------------------------------------------------------
    def add_adapters(self, config: SwiftConfig | dict[str, SwiftConfig], inference_mode: bool = False) -> None:
        """Add several adapters: all of them, or (if one fails) none."""
        configs = _as_config_dict(config)
        _precheck(self.base_model, configs, existing=self.adapters)
        with self._all_or_nothing():
            for adapter_name, cfg in configs.items():
                self.add_adapter(adapter_name, cfg, inference_mode=inference_mode)

    def add_adapter(self, adapter_name: str, config: SwiftConfig, inference_mode: bool = False) -> None:
        """Inject one adapter. All or nothing: if injection fails, the model is left as it was."""
        _precheck(self.base_model, {adapter_name: config}, existing=self.adapters)
        tuner = get_tuner(config.swift_type)
        with self._all_or_nothing():
            self.adapters[adapter_name] = config
            tuner.inject(self.base_model, config, adapter_name)
            self._wrap_modules_to_save(config, adapter_name)
            for layer in self._layers_of(adapter_name):
                layer.set_adapter_active(adapter_name, True)
                _follow_training_mode(layer)
            for p in self.adapter_parameters(adapter_name).values():
                p.requires_grad_(not inference_mode)

    @contextlib.contextmanager
    def _all_or_nothing(self) -> Iterator[None]:
        snapshot = _Snapshot(self.base_model, owner=self)
        try:
            yield
        except BaseException:
            snapshot.restore()
            raise

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter completely; the model computes as before it was added."""
        self._check_known(adapter_name)
        self._remove_adapter_modules(adapter_name)
        del self.adapters[adapter_name]
        _remove_files({adapter_name: self._offloaded.pop(adapter_name, None)})

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

    def _adapter_table(self) -> dict[str, dict[str, _Entry]]:
        """{adapter: {canonical key: entry}} for every adapter of this model.

        A parameter reachable from several layers (a tuner layer inside another adapter's copy,
        e.g. a LoRA inside a Part copy) belongs to the outermost layer that holds it: the copy is
        the Part adapter's, whatever it contains, and LoRA's keys stay those of the base model."""
        base = self.base_model
        claims: dict[int, tuple[int, str, _Entry]] = {}
        for path, layer in tuner_layers(base):
            depth = path.count(".") + 1 if path else 0
            layer_name = canonical_name(base, path)
            for adapter in layer.adapter_names:
                for rel, p in layer.adapter_parameters(adapter):
                    if id(p) not in claims or depth < claims[id(p)][0]:
                        claims[id(p)] = (depth, adapter, _Entry(p, layer_name, _canonical_rel(layer, adapter, rel)))
        table: dict[str, dict[str, _Entry]] = {name: {} for name in self.adapters}
        for _, adapter, entry in claims.values():
            if adapter not in table:
                continue
            key = f"{entry.layer}.{entry.rel}" if entry.layer else entry.rel
            if key in table[adapter]:
                raise RuntimeError(f"adapter {adapter!r}: two parameters share the canonical name {key!r}")
            table[adapter][key] = entry
        return table

    def adapter_parameters(self, adapter_name: str) -> dict[str, nn.Parameter]:
        """{canonical key: parameter} of one adapter (the keys `state_dict(adapter_name=...)` uses)."""
        self._check_known(adapter_name)
        return {k: e.param for k, e in self._adapter_table()[adapter_name].items()}

    def _adapter_named_parameters(self, adapter_name: str) -> Iterator[tuple[str, nn.Parameter]]:
        """Kept for older callers: `adapter_parameters(adapter_name).items()`."""
        yield from self.adapter_parameters(adapter_name).items()

    def _base_state(self, params_only: bool = True) -> dict[str, torch.Tensor]:
        """The base model's own weights by canonical name (tuner parameters left out)."""
        tuner_ids = {id(e.param) for entries in self._adapter_table().values() for e in entries.values()}
        items = self.base_model.named_parameters() if params_only else self.base_model.state_dict(keep_vars=True).items()
        out: dict[str, torch.Tensor] = {}
        for name, t in items:
            if id(t) in tuner_ids or any(_is_adapter_path(self.base_model, name)):
                continue
            out.setdefault(canonical_name(self.base_model, name), t)
        return out

    def _extra_state_params(self) -> dict[str, nn.Parameter]:
        if not self.extra_state_keys:
            return {}
        params = self._base_state()
        found = {n: p for n, p in params.items() if any(re.fullmatch(k, n) for k in self.extra_state_keys)}
        if not found:
            raise ValueError(f"extra_state_keys={self.extra_state_keys!r} matched no parameter of the base model "
                             f"(regexes must match a whole name, e.g. {next(iter(params), 'head.weight')!r})")
        return found

    def _extra_state_names(self) -> list[str]:
        return list(self._extra_state_params())

    def _check_known(self, adapter_name: str) -> None:
        if adapter_name not in self.adapters:
            raise ValueError(f"adapter_name={adapter_name!r} is unknown; this model has {list(self.adapters)}")

    # ---- state dicts -----------------------------------------------------------------------------
    def state_dict(self, *args: Any, adapter_name: str | None = None, peft_format: bool = False, **kwargs: Any):
        """Tuner weights only (ms-swift semantics): one adapter, or all adapters plus extra states.

        Keys are canonical names inside the base model, e.g. `layers.0.q_proj.lora_A.default.weight`.
        An adapter offloaded to "meta" is read back from its temporary file."""
        names = [adapter_name] if adapter_name else list(self.adapters)
        table = self._adapter_table()
        out: dict[str, torch.Tensor] = {}
        for name in names:
            self._check_known(name)
            out.update({k: e.param.detach() for k, e in table[name].items()})
            if name in self._offloaded:
                out.update(_load_file(self._offloaded[name]))
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
                self._reload_offloaded(name)
        table = self._adapter_table()
        params = {k: e.param for name in names for k, e in table[name].items()}
        if adapter_name is None:
            params.update(self._extra_state_params())
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
        """Write each adapter to `save_directory/<adapter>/` (and extra states to `extra_states/`).

        `peft_format=True` writes PEFT's layout instead ("default" at the top, PEFT key names).
        A tuner without parameters writes only its config. If no adapter has parameters (a model
        tuned with NEFTune alone, i.e. fully fine-tuned), the base model itself is saved: through its
        own `save_pretrained` (transformers / diffusers), else as the top-level `adapter_model.safetensors`.
        The directory is replaced atomically (`io.StagedWrite`); files swiftlite does not write stay."""
        if not safe_serialization:
            raise ValueError("safe_serialization=False: swiftlite writes safetensors only")
        if save_directory is None or not isinstance(save_directory, (str, os.PathLike)):
            raise TypeError(f"save_directory: expected a path, got {type(save_directory).__name__}")
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name or self.adapters)
        for name in names:
            self._check_known(name)
        if os.path.isfile(save_directory):
            raise ValueError(f"save_directory={save_directory!r} is a file; give a directory")
        # Build everything in memory first: a conversion error must not touch the directory.
        files: list[tuple[str, dict[str, Any], dict[str, torch.Tensor]]] = []  # (folder, config, weights)
        for name in names:
            config = self.adapters[name]
            weights = self.state_dict(adapter_name=name)
            folder = name
            if peft_format:
                tuner = get_tuner(config.swift_type)
                if tuner.peft_type is None:
                    raise ValueError(f"peft_format=True: {type(config).__name__} has no PEFT equivalent (only LoRA does)")
                config_dict, weights = tuner.to_peft(config, weights, name)
                folder = "" if name == DEFAULT_ADAPTER else name
            else:
                config_dict = config.to_dict()
                weights = get_tuner(config.swift_type).to_saved_state(self.base_model, config, weights, name)
            files.append((folder, config_dict, weights))
        extra = {k: p.detach() for k, p in self._extra_state_params().items()}
        save_base = bool(self.adapters) and not any(self._adapter_table().values())
        replaces = {io.EXTRA_STATES_DIR}
        if DEFAULT_ADAPTER in names:  # the other place "default" may sit becomes stale
            replaces |= {io.CONFIG_NAME, io.WEIGHTS_NAME, io.PICKLE_WEIGHTS_NAME, DEFAULT_ADAPTER}
        with io.StagedWrite(save_directory, replaces=replaces) as stage:
            for folder, config_dict, weights in files:
                stage.json(config_dict, os.path.join(folder, io.CONFIG_NAME))
                if weights:  # a tuner without parameters writes only its config
                    stage.safetensors(weights, os.path.join(folder, io.WEIGHTS_NAME))
            if extra:
                stage.safetensors(extra, os.path.join(io.EXTRA_STATES_DIR, io.WEIGHTS_NAME))
                stage.json({"extra_state_keys": self.extra_state_keys}, os.path.join(io.EXTRA_STATES_DIR, io.CONFIG_NAME))
            if save_base:
                self._save_base(stage)

    def _save_base(self, stage: io.StagedWrite) -> None:
        state = {k: t.detach() for k, t in self._base_state(params_only=False).items()}
        save = getattr(self.base_model, "save_pretrained", None)
        if callable(save):
            if "state_dict" in inspect.signature(save).parameters:
                save(stage.root, state_dict=state, safe_serialization=True)
            else:
                save(stage.root)
        else:
            stage.safetensors(state, io.WEIGHTS_NAME)

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
        import swiftlite.tuners  # noqa: F401  (fills the tuner registry)

        _require_module(model, "model")
        if model_id is None or not isinstance(model_id, (str, os.PathLike)):
            raise TypeError(f"model_id: expected a checkpoint directory or hub id, got {type(model_id).__name__}")
        directory = io.resolve_checkpoint_dir(os.fspath(model_id), revision)
        found = read_adapters(directory)
        if not found:
            raise FileNotFoundError(f"{directory}: no {io.CONFIG_NAME} at the top or in a sub-folder")
        mapping = _adapter_mapping(adapter_name, found, directory)
        through_peft = {new for new, saved in mapping.items() if _goes_through_peft(found[saved][0])}
        if through_peft:  # decided before anything is loaded: PEFT's own model, or ours
            if isinstance(model, SwiftModel) or len(through_peft) != len(mapping):
                kinds = sorted({found[s][0]["peft_type"] for n, s in mapping.items() if n in through_peft})
                raise ValueError(f"{directory}: PEFT {kinds} adapters load only through PEFT, into a plain model, and "
                                 f"not together with swiftlite adapters; load them on their own")
            return _load_with_peft(model, found, mapping, inference_mode)

        # Read and convert everything before touching the model.
        loaded: dict[str, tuple[SwiftConfig, dict[str, torch.Tensor] | None, str]] = {}
        base_weights: dict[str, dict[str, torch.Tensor]] = {}  # PEFT also saves embed_tokens / lm_head base weights
        for new, saved in mapping.items():
            raw, folder = found[saved]
            weights = io.load_weights(folder, allow_pickle=allow_pickle) if _has_weights(folder) else None
            if "swift_type" not in raw and "peft_type" in raw:
                tuner = next(t for t in TUNERS.values() if t.peft_type == raw["peft_type"])
                config, weights = tuner.from_peft(raw, weights or {}, new)
                weights, base_weights[new] = split_base_weights(weights)
                saved = new
            else:
                config = SwiftConfig.from_dict(raw)
            loaded[new] = (config, weights, saved)
        extra_dir = os.path.join(directory, io.EXTRA_STATES_DIR)
        extra = io.load_weights(extra_dir, allow_pickle=allow_pickle) if _has_weights(extra_dir) else {}
        extra_keys = kwargs.pop("extra_state_keys", None)  # as ms-swift: given, else the saved regexes
        if extra_keys is None and os.path.isfile(os.path.join(extra_dir, io.CONFIG_NAME)):
            with open(os.path.join(extra_dir, io.CONFIG_NAME), encoding="utf-8") as fh:
                extra_keys = json.load(fh).get("extra_state_keys")

        base = model.base_model if isinstance(model, SwiftModel) else model
        _precheck(base, {new: c for new, (c, _, _) in loaded.items()},
                  existing=model.adapters if isinstance(model, SwiftModel) else {})
        snapshot = _Snapshot(base, owner=model if isinstance(model, SwiftModel) else None)
        try:
            swift_model = model if isinstance(model, SwiftModel) else cls(model)
            for new, (config, weights, saved) in loaded.items():
                swift_model.add_adapter(new, config, inference_mode=inference_mode)
                swift_model._load_saved(new, saved, weights, found[mapping[new]][1])
                load_base_weights(swift_model.base_model, base_weights.get(new, {}))  # as PEFT loads them
            if extra or extra_keys:
                swift_model._load_extra_states(extra, inference_mode, extra_keys)
            if all(not swift_model._adapter_table()[n] for n in loaded):
                swift_model._load_base(directory)
        except BaseException:
            snapshot.restore()
            raise
        return swift_model

    def _load_saved(self, new: str, saved: str, weights: dict[str, torch.Tensor] | None, folder: str) -> None:
        """Load checkpoint weights written for adapter `saved` into adapter `new`."""
        table = self._adapter_table()[new]
        if weights is None:
            if table:
                raise FileNotFoundError(f"{folder}: no {io.WEIGHTS_NAME}, but adapter {new!r} "
                                        f"({type(self.adapters[new]).__name__}) has {len(table)} parameters")
            return
        if saved != new:  # the checkpoint names the adapter `saved` where this model says `new`
            renamed = {f"{e.layer}.{_rename_in(e.rel, new, saved)}" if e.layer else _rename_in(e.rel, new, saved): k
                       for k, e in table.items()}
            weights = {renamed.get(k, k): v for k, v in weights.items()}
        config = self.adapters[new]
        weights = get_tuner(config.swift_type).from_saved_state(self.base_model, config, weights, new)
        self.load_state_dict(weights, adapter_name=new)

    def _load_extra_states(self, extra: dict[str, torch.Tensor], inference_mode: bool,
                           keys: list[str] | None = None) -> None:
        params = self._base_state()
        missing = [k for k in extra if k not in params]
        if missing:
            raise ValueError(f"extra_states: key {missing[0]!r} is not a parameter of this model")
        _check_state_dict({k: params[k] for k in extra}, extra, strict=False)
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise TypeError(f"extra_state_keys: expected a list of regexes, got {keys!r}")
        self.extra_state_keys += [k for k in keys or [] if k not in self.extra_state_keys]
        covered = set(self._extra_state_params())
        self.extra_state_keys += [re.escape(k) for k in extra if k not in covered]
        with torch.no_grad():
            for k, v in extra.items():
                params[k].copy_(v.to(params[k].dtype))
        for p in self._extra_state_params().values():
            p.requires_grad_(not inference_mode)  # trainable again, as when they were saved

    def _load_base(self, directory: str) -> None:
        """A checkpoint of parameter-free tuners only also holds the whole base model (see save_pretrained).

        A plain module's weights (`adapter_model.safetensors` at the top) are loaded here; a
        transformers / diffusers base saved through its own `save_pretrained` is read by its own
        loader (`AutoModel.from_pretrained(dir)`), which knows its checkpoint's key names."""
        path = os.path.join(directory, io.WEIGHTS_NAME)
        if not os.path.isfile(path) or os.path.isfile(os.path.join(directory, io.CONFIG_NAME)):
            return
        state = _load_file(path)
        target = self._base_state(params_only=False)
        unknown = [k for k in state if k not in target]
        if unknown:
            raise ValueError(f"{path}: key {unknown[0]!r} is not a weight of this model (a different base model?)")
        _check_state_dict({k: target[k] for k in state}, state, strict=False)
        with torch.no_grad():
            for k, v in state.items():
                target[k].copy_(v.to(target[k].dtype))

    # ---- activation ------------------------------------------------------------------------------
    def activate_adapter(self, adapter_name: str) -> None:
        self._check_known(adapter_name)
        self._reload_offloaded(adapter_name)
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
        if offload == "meta" and adapter_name not in self._offloaded:
            fd, path = tempfile.mkstemp(prefix="swiftlite-offload-", suffix=".safetensors")
            os.close(fd)
            try:
                io.save_safetensors_atomic(self.state_dict(adapter_name=adapter_name), path)
            except BaseException:
                os.remove(path)
                raise
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
        _remove_files(self._offloaded)
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
        _require_module(model, "model")
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
        import swiftlite.tuners  # noqa: F401

        found = read_adapters(ckpt_dir)
        if not found:
            raise FileNotFoundError(f"ckpt_dir={ckpt_dir!r}: no {io.CONFIG_NAME} found")
        if os.path.isdir(os.path.join(ckpt_dir, io.EXTRA_STATES_DIR)):
            raise AssertionError(f"{ckpt_dir}: has extra_states/ (trained base weights), which PEFT's format cannot hold")
        files: list[tuple[str, dict[str, Any], dict[str, torch.Tensor]]] = []
        for name, (raw, folder) in found.items():
            kind = raw.get("swift_type", raw.get("peft_type"))
            tuner = TUNERS.get(raw["swift_type"]) if "swift_type" in raw else next(
                (t for t in TUNERS.values() if t.peft_type == raw.get("peft_type")), None)
            if tuner is None or tuner.peft_type is None:
                raise AssertionError(f"{folder}: adapter {name!r} is {kind}; only LoRA converts to PEFT's format")
            weights = io.load_weights(folder)
            if "swift_type" in raw:
                config = SwiftConfig.from_dict(raw)
            else:  # already PEFT's format: read it back, to write it out again unchanged
                config, weights = tuner.from_peft(raw, weights, name)
            try:
                config_dict, weights = tuner.to_peft(config, weights, name)
            except ValueError as err:
                raise AssertionError(f"{folder}: {err}") from err
            files.append(("" if name == DEFAULT_ADAPTER else name, config_dict, weights))
        replaces = {io.CONFIG_NAME, io.WEIGHTS_NAME, io.PICKLE_WEIGHTS_NAME, DEFAULT_ADAPTER}
        with io.StagedWrite(output_dir, replaces=replaces | set(found)) as stage:
            for folder, config_dict, weights in files:
                stage.json(config_dict, os.path.join(folder, io.CONFIG_NAME))
                stage.safetensors(weights, os.path.join(folder, io.WEIGHTS_NAME))
            if os.path.realpath(ckpt_dir) != stage.directory:  # the rest of the folder comes along, as in ms-swift
                for entry in os.listdir(ckpt_dir):
                    if entry not in replaces | set(found) and not entry.startswith("."):
                        io._carry(os.path.join(ckpt_dir, entry), stage.path(entry))


# ---- reading a checkpoint without a model -------------------------------------------------------
def read_adapters(directory: str) -> dict[str, tuple[dict[str, Any], str]]:
    """{adapter name: (config dict, folder)} of the adapters saved under `directory`. Reads only.

    `directory/<name>/adapter_config.json` is adapter `name`; a top-level `adapter_config.json`
    (PEFT's layout, or swiftlite's before it followed ms-swift) is adapter "default"."""
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{directory!r} is not a directory")
    found: dict[str, tuple[dict[str, Any], str]] = {}
    if os.path.isfile(os.path.join(directory, io.CONFIG_NAME)):
        found[DEFAULT_ADAPTER] = (io.read_json(os.path.join(directory, io.CONFIG_NAME)), directory)
    for entry in sorted(os.listdir(directory)):
        sub = os.path.join(directory, entry)
        if entry == io.EXTRA_STATES_DIR or entry.startswith(".") or not os.path.isfile(os.path.join(sub, io.CONFIG_NAME)):
            continue
        if entry in found:
            raise ValueError(f"{directory}: adapter {entry!r} is saved twice, at the top and in {entry}/; "
                             f"remove the stale copy")
        found[entry] = (io.read_json(os.path.join(sub, io.CONFIG_NAME)), sub)
    return found


# ---- helpers ------------------------------------------------------------------------------------
def _follow_training_mode(layer: TunerLayer) -> None:
    """New modules are built in training mode; give a layer's own modules (not the wrapped one's) the
    mode of the module it wraps, so an eval-mode model stays deterministic (no LoRA dropout) after
    prepare_model. PEFT leaves them in training mode until the next `.eval()`."""
    base = layer.base_layer
    if base is None:
        return
    inside_base = {id(m) for m in base.modules()}
    for module in layer.modules():
        if id(module) not in inside_base:
            module.training = base.training


def _canonical_rel(layer: TunerLayer, adapter: str, rel: str) -> str:
    """Canonical form of a name a layer gives one of its adapter parameters: relative to the layer
    (`lora_A.default.weight`) or, for a tuner that names a copy's weights like the original's
    (Part), relative to the adapter's module."""
    roots = [layer] + [m for _, m in layer.adapter_modules(adapter) if isinstance(m, nn.Module)]
    for root in roots:
        module: nn.Module | None = root
        for part in rel.split(".")[:-1]:
            module = module._modules.get(part) if module is not None else None
        if module is not None:
            return canonical_name(root, rel)
    return rel


def _is_adapter_path(root: nn.Module, name: str) -> Iterator[bool]:
    """True for each point where `name` enters a tuner layer's adapter container (a tuner weight)."""
    module: nn.Module | None = root
    for part in name.split("."):
        yield isinstance(module, TunerLayer) and module.is_adapter_attribute(part)
        module = module._modules.get(part) if module is not None else None


def _rename_in(rel: str, new: str, saved: str) -> str:
    """`lora_A.new.weight` -> `lora_A.saved.weight` (also `_part_new` -> `_part_saved`)."""
    parts = rel.split(".")
    for i, part in enumerate(parts):
        if part == new:
            parts[i] = saved
            break
        if part.endswith("_" + new):
            parts[i] = part[: -len(new)] + saved
            break
    return ".".join(parts)


@functools.lru_cache(maxsize=1)
def _module_attribute_names() -> frozenset[str]:
    """Names an adapter may not take: they are attributes of the containers that hold adapters."""
    return frozenset(dir(nn.ModuleDict())) | frozenset(dir(nn.ParameterDict())) | frozenset(dir(TunerLayer()))


def check_adapter_name(adapter_name: Any) -> None:
    """One clear error for a name that cannot be an adapter name."""
    example = "e.g. adapter_name='default' or 'style_a'"
    if not isinstance(adapter_name, str):
        raise TypeError(f"adapter_name: must be a str, got {type(adapter_name).__name__} {adapter_name!r}; {example}")
    if not adapter_name:
        raise ValueError(f"adapter_name: must not be empty; {example}")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", adapter_name):
        fixed = re.sub(r"[^A-Za-z0-9_\-]", "_", adapter_name)
        fixed = fixed if re.match(r"[A-Za-z_]", fixed) else "a_" + fixed
        raise ValueError(f"adapter_name={adapter_name!r}: use letters, digits, '_' or '-', starting with a letter or "
                         f"'_' (no dots or path separators: the name is a module key and a folder name), "
                         f"e.g. {fixed!r}")
    if adapter_name in RESERVED_ADAPTER_NAMES:
        raise ValueError(f"adapter_name={adapter_name!r} is reserved (checkpoints keep base weights in "
                         f"{adapter_name}/); pick another name, e.g. {adapter_name + '_adapter'!r}")
    if adapter_name in _module_attribute_names():
        raise ValueError(f"adapter_name={adapter_name!r} is an attribute of torch modules and cannot key a "
                         f"ModuleDict; pick another name, e.g. {adapter_name.strip('_') + '_adapter'!r}")


def _precheck(model: nn.Module, configs: dict[str, Any], existing: dict[str, SwiftConfig] | None = None) -> None:
    """Everything that can be checked without changing the model: names, config types and values,
    and that each config's targets exist. Raises before any change."""
    import swiftlite.tuners  # noqa: F401  (fills the tuner registry)

    in_layers = {n for _, layer in tuner_layers(model) for n in layer.adapter_names}
    for adapter_name, config in configs.items():
        check_adapter_name(adapter_name)
        if not isinstance(config, SwiftConfig):
            if type(config).__module__.startswith("peft"):
                raise TypeError("a PEFT config goes through PEFT: call Swift.prepare_model(model, peft_config)")
            raise TypeError(f"config: expected a SwiftConfig (e.g. LoRAConfig), got {type(config).__name__}")
        if adapter_name in (existing or {}):
            raise ValueError(f"adapter_name={adapter_name!r} already exists; pick another name or delete_adapter() it")
        if adapter_name in in_layers:
            raise ValueError(f"adapter_name={adapter_name!r} already exists in this model's tuner layers (was it "
                             f"prepared before? pass the SwiftModel, not its .base_model, to add adapters); "
                             f"adding it again would re-initialise it. Pick another name (from_pretrained: "
                             f"adapter_name={{{adapter_name!r}: 'new_name'}}), delete_adapter({adapter_name!r}) "
                             f"first, or load into a freshly built base model")
        config.validate()
        tuner = get_tuner(config.swift_type)
        tuner.check(model, config, tuner.match(model, config))  # targets, then shapes: before any change
    if len(configs) != len(set(configs)):  # pragma: no cover - dict keys are unique
        raise ValueError("adapter names must be unique")


def _as_config_dict(config: Any) -> dict[str, Any]:
    if config is None:
        raise TypeError("config: expected a SwiftConfig or {adapter_name: config}, got None")
    return dict(config) if isinstance(config, dict) else {DEFAULT_ADAPTER: config}


def _require_module(model: Any, what: str) -> None:
    if model is None:
        raise TypeError(f"{what}: expected a torch.nn.Module (the base model), got None")
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what}: expected a torch.nn.Module (the base model), got {type(model).__name__}")


def _adapter_mapping(adapter_name: Any, found: dict[str, Any], directory: str) -> dict[str, str]:
    if adapter_name is None:
        mapping = {n: n for n in found}
    elif isinstance(adapter_name, str):
        mapping = {adapter_name: adapter_name}
    elif isinstance(adapter_name, dict):  # ms-swift: {saved folder: new adapter name}
        mapping = {new: saved for saved, new in adapter_name.items()}
        if len(mapping) != len(adapter_name):
            raise ValueError(f"adapter_name={adapter_name!r}: two saved adapters would load under one name")
    else:
        mapping = {n: n for n in adapter_name}
    for new, saved in mapping.items():
        if saved not in found:
            raise ValueError(f"adapter_name: {saved!r} is not in {directory}; found {sorted(found)}")
        check_adapter_name(new)
    return mapping


def _goes_through_peft(raw: dict[str, Any]) -> bool:
    """A PEFT config that no swiftlite tuner converts: PEFT itself loads it (as ms-swift does)."""
    return "swift_type" not in raw and "peft_type" in raw and not any(
        t.peft_type == raw["peft_type"] for t in TUNERS.values())


def _load_with_peft(model: nn.Module, found: dict[str, Any], mapping: dict[str, str], inference_mode: bool):
    import peft

    peft_model = None
    for new, saved in mapping.items():
        folder = found[saved][1]
        if peft_model is None:
            peft_model = peft.PeftModel.from_pretrained(model, folder, adapter_name=new, is_trainable=not inference_mode)
        else:
            peft_model.load_adapter(folder, adapter_name=new, is_trainable=not inference_mode)
    return peft_model


def _has_weights(folder: str) -> bool:
    return any(os.path.isfile(os.path.join(folder, f)) for f in (io.WEIGHTS_NAME, io.PICKLE_WEIGHTS_NAME))


def _load_file(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def _remove_files(paths: dict[str, str | None]) -> None:
    for path in list(paths.values()):
        if path and os.path.exists(path):
            os.remove(path)


def _copy_plain(value: Any) -> Any:
    """Copy dicts, lists and sets (recursively); share everything else (modules, tensors)."""
    if isinstance(value, dict):
        copied = value.copy()  # keeps the type (OrderedDict, defaultdict, ...)
        for k in copied:
            copied[k] = _copy_plain(copied[k])
        return copied
    if type(value) in (list, set):
        return type(value)(_copy_plain(v) for v in value)
    return value


class _Snapshot:
    """What a failed prepare/load must put back: every module's attributes (children, parameters,
    hooks, per-adapter bookkeeping), `requires_grad` flags, the HF config, the SwiftModel's own state."""

    def __init__(self, root: nn.Module, owner: nn.Module | None = None) -> None:
        self.modules = [(m, _copy_plain(m.__dict__)) for m in root.modules()]
        self.grads = [(p, p.requires_grad) for p in root.parameters()]
        config = getattr(root, "config", None)
        self.config = (config, _copy_plain(vars(config))) if hasattr(config, "__dict__") and not isinstance(config, nn.Module) else None
        self.owner = (owner, _copy_plain(owner.__dict__)) if owner is not None else None

    def restore(self) -> None:
        for obj, saved in [*self.modules, *([self.config] if self.config else []), *([self.owner] if self.owner else [])]:
            obj.__dict__.clear()
            obj.__dict__.update(saved)
        for p, flag in self.grads:
            p.requires_grad_(flag)


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
