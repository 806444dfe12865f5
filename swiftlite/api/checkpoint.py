"""Saving and loading a SwiftModel's adapters: ms-swift's checkpoint layout, and PEFT's.

    save_dir/<adapter>/adapter_config.json + adapter_model.safetensors    every adapter, "default" too
    save_dir/extra_states/adapter_model.safetensors                       base weights (extra_state_keys)

(`core/io.py` describes the layout and the atomic write.) What this module decides:

- `read_adapters(dir)` reads which adapters a directory holds, and nothing else: no model involved.
- `load` decides first whether a checkpoint goes through PEFT (a PEFT method swiftlite does not
  implement, e.g. PEFT's IA3: PEFT builds its own `PeftModel`, as in ms-swift) or through swiftlite
  (its own configs, and PEFT LoRA converted by renaming keys, `core/peft_format.py`); never a mix.
- A tuner without parameters (NEFTune) writes only its config; if no adapter has parameters (the
  model was fully fine-tuned), the base model itself is saved and loaded back.
- `extra_states/` holds base weights trained through `extra_state_keys`; on loading they become
  trainable again unless `inference_mode`.
"""
from __future__ import annotations

import inspect
import json
import os
import re
import warnings
from typing import Any

import torch
import torch.nn as nn

from ..core import io
from ..core.config import TUNERS, SwiftConfig, get_tuner
from ..core.peft_format import load_base_weights, split_base_weights
from ..core.snapshot import all_or_nothing
from .checks import (DEFAULT_ADAPTER, check_adapter_file, check_adapter_name, check_state_dict, precheck,
                     require_module)


# ---- saving --------------------------------------------------------------------------------------
def save(swift_model: Any, save_directory: str, adapter_name: str | list[str] | None = None,
         peft_format: bool = False) -> None:
    """`SwiftModel.save_pretrained` (see there). Builds everything in memory first, then writes the
    directory in one `io.StagedWrite`, so a conversion error never touches it."""
    if save_directory is None or not isinstance(save_directory, (str, os.PathLike)):
        raise TypeError(f"save_directory: expected a path, got {type(save_directory).__name__}")
    if not os.fspath(save_directory).strip():
        raise ValueError(f"save_directory={os.fspath(save_directory)!r}: empty; give the folder to write, "
                         f"e.g. save_pretrained('out/lora')")
    names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name or swift_model.adapters)
    for name in names:
        swift_model._check_known(name)
    if os.path.isfile(save_directory):
        raise ValueError(f"save_directory={save_directory!r} is a file; give a directory")
    files: list[tuple[str, dict[str, Any], dict[str, torch.Tensor]]] = []  # (folder, config, weights)
    save_base = not swift_model._has_tuner_weights()  # then state_dict() is the base model's, saved once below
    for name in names:
        config = swift_model.adapters[name]
        weights = {} if save_base else swift_model.state_dict(adapter_name=name)
        folder = name
        if peft_format:
            tuner = get_tuner(config.swift_type)
            if tuner.peft_type is None:
                raise ValueError(f"peft_format=True: {type(config).__name__} has no PEFT equivalent (only LoRA and "
                                 f"SHiRA have)")
            weights = tuner.to_saved_state(swift_model.base_model, config, weights, name)  # e.g. SHiRA's indices
            config_dict, weights = tuner.to_peft(config, weights, name)
            folder = "" if name == DEFAULT_ADAPTER else name
        else:
            config_dict = config.to_dict()
            weights = get_tuner(config.swift_type).to_saved_state(swift_model.base_model, config, weights, name)
        files.append((folder, config_dict, weights))
    extra = {k: p.detach() for k, p in swift_model._extra_state_params().items()}
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
            stage.json({"extra_state_keys": swift_model.extra_state_keys}, os.path.join(io.EXTRA_STATES_DIR, io.CONFIG_NAME))
        if save_base:
            _save_base(swift_model, stage)


def _save_base(swift_model: Any, stage: io.StagedWrite) -> None:
    """No adapter has weights: save the base model, through its own `save_pretrained` if it has one."""
    state = {k: t.detach() for k, t in swift_model._base_state(params_only=False).items()}
    save = getattr(swift_model.base_model, "save_pretrained", None)
    if callable(save):
        if "state_dict" in inspect.signature(save).parameters:
            save(stage.root, state_dict=state, safe_serialization=True)
        else:
            save(stage.root)
    else:
        stage.safetensors(state, io.WEIGHTS_NAME)


# ---- loading -------------------------------------------------------------------------------------
def load(SwiftModel: type, model: nn.Module, model_id: str, adapter_name: Any = None, inference_mode: bool = True,
         revision: str | None = None, allow_pickle: bool = False, **kwargs: Any):
    """`SwiftModel.from_pretrained` (see there): a SwiftModel, or PEFT's own model for PEFT methods.
    `SwiftModel` is the class that calls it (model.py imports this module, not the other way round)."""
    require_module(model, "model")
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
    precheck(base, {new: c for new, (c, _, _) in loaded.items()},
             existing=model.adapters if isinstance(model, SwiftModel) else {})
    with all_or_nothing(base, owner=model if isinstance(model, SwiftModel) else None):
        swift_model = model if isinstance(model, SwiftModel) else SwiftModel(model)
        for new, (config, weights, saved) in loaded.items():
            swift_model.add_adapter(new, config, inference_mode=inference_mode)
            _load_saved(swift_model, new, saved, weights, found[mapping[new]][1])
            load_base_weights(swift_model.base_model, base_weights.get(new, {}))  # as PEFT loads them
        if extra or extra_keys:
            _load_extra_states(swift_model, extra, inference_mode, extra_keys)
        if all(not swift_model._adapter_table()[n] for n in loaded):
            _load_base(swift_model, directory)
    return swift_model


def _load_saved(swift_model: Any, new: str, saved: str, weights: dict[str, torch.Tensor] | None, folder: str) -> None:
    """Load checkpoint weights written for adapter `saved` into adapter `new`."""
    table = swift_model._adapter_table()[new]
    if weights is None:
        if table:
            raise FileNotFoundError(f"{folder}: no {io.WEIGHTS_NAME}, but adapter {new!r} "
                                    f"({type(swift_model.adapters[new]).__name__}) has {len(table)} parameters")
        return
    if saved != new:  # the checkpoint names the adapter `saved` where this model says `new`
        renamed = {f"{e.layer}.{_rename_in(e.rel, new, saved)}" if e.layer else _rename_in(e.rel, new, saved): k
                   for k, e in table.items()}
        weights = {renamed.get(k, k): v for k, v in weights.items()}
    config = swift_model.adapters[new]
    weights = get_tuner(config.swift_type).from_saved_state(swift_model.base_model, config, weights, new)
    swift_model.load_state_dict(weights, adapter_name=new)


def _load_extra_states(swift_model: Any, extra: dict[str, torch.Tensor], inference_mode: bool,
                       keys: list[str] | None = None) -> None:
    params = swift_model._base_state()
    missing = [k for k in extra if k not in params]
    if missing:
        raise ValueError(f"extra_states: key {missing[0]!r} is not a parameter of this model")
    check_state_dict({k: params[k] for k in extra}, extra, strict=False)
    if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
        raise TypeError(f"extra_state_keys: expected a list of regexes, got {keys!r}")
    swift_model.extra_state_keys += [k for k in keys or [] if k not in swift_model.extra_state_keys]
    covered = set(swift_model._extra_state_params())
    swift_model.extra_state_keys += [re.escape(k) for k in extra if k not in covered]
    with torch.no_grad():
        for k, v in extra.items():
            params[k].copy_(v.to(params[k].dtype))
    for p in swift_model._extra_state_params().values():
        p.requires_grad_(not inference_mode)  # trainable again, as when they were saved


def _load_base(swift_model: Any, directory: str) -> None:
    """A checkpoint of parameter-free tuners only also holds the whole base model (see `save`).

    A plain module's weights (`adapter_model.safetensors` at the top) are loaded here; a
    transformers / diffusers base saved through its own `save_pretrained` is read by its own
    loader (`AutoModel.from_pretrained(dir)`), which knows its checkpoint's key names."""
    path = os.path.join(directory, io.WEIGHTS_NAME)
    if not os.path.isfile(path) or os.path.isfile(os.path.join(directory, io.CONFIG_NAME)):
        return
    from safetensors.torch import load_file

    state = load_file(path)
    target = swift_model._base_state(params_only=False)
    unknown = [k for k in state if k not in target]
    if unknown:
        raise ValueError(f"{path}: key {unknown[0]!r} is not a weight of this model (a different base model?)")
    check_state_dict({k: target[k] for k in state}, state, strict=False)
    with torch.no_grad():
        for k, v in state.items():
            target[k].copy_(v.to(target[k].dtype))


# ---- converting a directory to PEFT's format ---------------------------------------------------
def save_to_peft_format(ckpt_dir: str, output_dir: str) -> None:
    """`Swift.save_to_peft_format` (see there)."""
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
            raise AssertionError(f"{folder}: adapter {name!r} is {kind}; only LoRA and SHiRA convert to PEFT's format")
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
        found[DEFAULT_ADAPTER] = (_read_config(directory), directory)
    for entry in sorted(os.listdir(directory)):
        sub = os.path.join(directory, entry)
        if entry == io.EXTRA_STATES_DIR or not os.path.isfile(os.path.join(sub, io.CONFIG_NAME)):
            continue
        if entry.startswith("."):  # a hidden folder: reported, not loaded
            warnings.warn(f"{directory}: skipping the hidden folder {entry}/ (it holds an {io.CONFIG_NAME}; to load "
                          f"it, rename it to a valid adapter name)", stacklevel=3)
            continue
        if entry in found:
            raise ValueError(f"{directory}: adapter {entry!r} is saved twice, at the top and in {entry}/; "
                             f"remove the stale copy")
        found[entry] = (_read_config(sub), sub)
    return found


def _read_config(folder: str) -> dict[str, Any]:
    """`folder/adapter_config.json` as a dict, checked to name a tuner that can load it."""
    path = os.path.join(folder, io.CONFIG_NAME)
    data = io.read_json(path)
    check_adapter_file(data, path)
    return data


# ---- helpers ------------------------------------------------------------------------------------
def _adapter_mapping(adapter_name: Any, found: dict[str, Any], directory: str) -> dict[str, str]:
    """{new name: saved name} from `from_pretrained`'s `adapter_name`."""
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
        try:
            check_adapter_name(new)
        except ValueError as err:
            if new != saved:
                raise
            raise ValueError(f"{directory}: the sub-folder {saved}/ holds an adapter, but its name cannot be an "
                             f"adapter name ({err}); load it under another name with "
                             f"adapter_name={{{saved!r}: 'new_name'}}, or rename the folder") from None
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
