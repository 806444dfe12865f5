"""Offloading an inactive adapter: its weights to CPU, or freed ("meta") and kept in a temporary
safetensors file until the adapter is activated again or deleted.

    model.deactivate_adapter("style_b", offload="meta")   # style_b's memory is freed
    model.activate_adapter("style_b")                     # read back, onto the base layer's device
"""
from __future__ import annotations

import os
import tempfile
from typing import Any

import torch
import torch.nn as nn

from ..core import io
from ..core.layer import TunerLayer


def offload_adapter(swift_model: Any, adapter_name: str, offload: str) -> None:
    """Move an (already deactivated) adapter's weights to `offload` ("cpu" or "meta")."""
    weights = {k: p.detach() for k, p in swift_model.adapter_parameters(adapter_name).items()}
    if offload == "meta" and weights and adapter_name not in swift_model._offloaded:  # NEFTune has none to keep
        fd, path = tempfile.mkstemp(prefix="swiftlite-offload-", suffix=".safetensors")
        os.close(fd)
        try:
            io.save_safetensors_atomic(weights, path)
        except BaseException:
            os.remove(path)
            raise
        swift_model._offloaded[adapter_name] = path
    move_adapter(swift_model._layers_of(adapter_name), adapter_name, torch.device(offload))


def reload_adapter(swift_model: Any, adapter_name: str) -> None:
    """Bring an offloaded adapter back to its base layers' device (and its weights back from "meta")."""
    layers = swift_model._layers_of(adapter_name)
    for layer in layers:
        device, _ = layer._base_device_dtype()
        if any(p.device != device for _, p in layer.adapter_parameters(adapter_name)):
            move_adapter(layers, adapter_name, device)
    weights = offloaded_weights(swift_model, adapter_name)
    path = swift_model._offloaded.pop(adapter_name, None)
    if path:
        swift_model.load_state_dict(weights, adapter_name=adapter_name)
        os.remove(path)


def offloaded_weights(swift_model: Any, adapter_name: str) -> dict[str, torch.Tensor]:
    """The weights of an adapter offloaded to "meta", read from its temporary file ({} if it is not)."""
    path = swift_model._offloaded.get(adapter_name)
    if not path:
        return {}
    from safetensors.torch import load_file

    return load_file(path)


def move_adapter(layers: list[TunerLayer], adapter_name: str, device: torch.device) -> None:
    for layer in layers:
        for attr, item in list(layer.adapter_modules(adapter_name)):
            container = getattr(layer, attr)
            if isinstance(item, nn.Parameter):
                data = torch.empty_like(item, device=device) if item.is_meta else item.to(device)  # meta has no data
                container[adapter_name] = nn.Parameter(data, requires_grad=item.requires_grad)
            elif device.type == "meta" or any(p.device.type == "meta" for p in item.parameters()):
                item.to_empty(device=device) if device.type != "meta" else item.to(device)
            else:
                item.to(device)


def remove_files(paths: dict[str, str | None]) -> None:
    """Delete the temporary files of offloaded adapters."""
    for path in list(paths.values()):
        if path and os.path.exists(path):
            os.remove(path)
