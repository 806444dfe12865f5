"""Checks made before a model is changed: adapter names, configs, targets, state-dict keys.

Everything here raises one clear error (what was wrong, what was expected, how to fix it) and
changes nothing, so `SwiftModel` can run it before it touches the model.
"""
from __future__ import annotations

import functools
import re
import warnings
from typing import Any

import torch
import torch.nn as nn

from ..core import io
from ..core.config import TUNERS, SwiftConfig, get_tuner
from ..core.io import CheckpointError
from ..core.layer import TunerLayer, tuner_layers

DEFAULT_ADAPTER = "default"
# Checkpoint folder names an adapter may not take.
RESERVED_ADAPTER_NAMES = frozenset({io.EXTRA_STATES_DIR})


def require_module(model: Any, what: str) -> None:
    if model is None:
        raise TypeError(f"{what}: expected a torch.nn.Module (the base model), got None")
    if not isinstance(model, nn.Module):
        raise TypeError(f"{what}: expected a torch.nn.Module (the base model), got {type(model).__name__}")


def as_config_dict(config: Any) -> dict[str, Any]:
    """`config` or `{adapter_name: config}` -> `{adapter_name: config}` ("default" for a bare config)."""
    if config is None:
        raise TypeError("config: expected a SwiftConfig or {adapter_name: config}, got None")
    return dict(config) if isinstance(config, dict) else {DEFAULT_ADAPTER: config}


@functools.lru_cache(maxsize=1)
def _module_attribute_names() -> frozenset[str]:
    """Names an adapter may not take: they are attributes of the containers that hold adapters."""
    return frozenset(dir(nn.ModuleDict())) | frozenset(dir(nn.ParameterDict())) | frozenset(dir(TunerLayer()))


MAX_ADAPTER_NAME_BYTES = 255  # NAME_MAX of ext4, APFS, NTFS (in UTF-16 units) and most file systems


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
    if len(adapter_name.encode()) > MAX_ADAPTER_NAME_BYTES:  # save_pretrained writes dir/<adapter_name>/
        raise ValueError(f"adapter_name: {len(adapter_name.encode())} bytes long, but it is also a folder name, "
                         f"which file systems cap at {MAX_ADAPTER_NAME_BYTES} bytes; use a shorter name, e.g. "
                         f"{adapter_name[:32]!r}")
    if adapter_name in RESERVED_ADAPTER_NAMES:
        raise ValueError(f"adapter_name={adapter_name!r} is reserved (checkpoints keep base weights in "
                         f"{adapter_name}/); pick another name, e.g. {adapter_name + '_adapter'!r}")
    if adapter_name in _module_attribute_names():
        raise ValueError(f"adapter_name={adapter_name!r} is an attribute of torch modules and cannot key a "
                         f"ModuleDict; pick another name, e.g. {adapter_name.strip('_') + '_adapter'!r}")


def precheck(model: nn.Module, configs: dict[str, Any], existing: dict[str, SwiftConfig] | None = None) -> None:
    """Everything that can be checked without changing the model: names, config types and values,
    and that each config's targets exist. Raises before any change."""
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


def check_state_dict(params: dict[str, torch.Tensor], state_dict: dict[str, torch.Tensor], strict: bool) -> None:
    """Every key of `state_dict` names one of `params` with its shape (and, if `strict`, none is missing)."""
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


# ---- a saved adapter_config.json --------------------------------------------------------------------
def check_adapter_file(data: dict[str, Any], path: str) -> None:
    """`data` (read from `path`) says which tuner wrote it: a registered `swift_type` whose config
    builds from it, or a `peft_type` that PEFT (or a swiftlite tuner) knows. Raises CheckpointError."""
    if "swift_type" in data:
        if data["swift_type"] not in TUNERS:
            raise CheckpointError(f"{path}: swift_type={data['swift_type']!r} is not a registered tuner; known: "
                                  f"{', '.join(sorted(TUNERS))}. Import the module that registers it first.")
        try:  # build the config once so that a bad field is reported with the file it came from
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # unknown fields: the real load warns about them
                SwiftConfig.from_dict(data)
        except ValueError as err:
            raise CheckpointError(f"{path}: {err}") from None
        return
    if "peft_type" in data:
        peft_type = data["peft_type"]
        known = {t.peft_type for t in TUNERS.values() if t.peft_type}
        try:
            from peft.utils import PeftType

            known |= {m.value for m in PeftType}
        except ImportError:  # without PEFT only swiftlite's own conversions are possible
            pass
        if peft_type not in known:
            raise CheckpointError(f"{path}: peft_type={peft_type!r} is not a PEFT method; known: "
                                  f"{', '.join(sorted(map(str, known)))}")
        return
    raise CheckpointError(f"{path}: neither 'swift_type' nor 'peft_type' is set, so no tuner can load it")
