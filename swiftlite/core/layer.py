"""TunerLayer: the base class of every module a tuner injects.

A tuner layer usually wraps one frozen module of the base model (`self.base_layer`) and keeps each
adapter's parameters in containers keyed by adapter name, PEFT style::

    q_proj                      <- a LoRA TunerLayer put where the nn.Linear was
      base_layer                <- the original, frozen nn.Linear
      lora_A  {default: Linear, second: Linear}
      lora_B  {default: Linear, second: Linear}

so a parameter is named `...q_proj.lora_A.default.weight`. The class attribute `adapter_attrs`
lists those containers (`("lora_A", "lora_B")`); everything generic — which parameters belong to
which adapter, saving, deleting, offloading — reads them from there, so a tuner file only writes its
math.

Activation follows ms-swift: by default one activation state for the whole process; with the
environment variable `USE_UNIQUE_THREAD=0`, each thread keeps its own, so two threads can run one
model with different adapters. The main thread's choices are the process-wide state, which a thread
that never chose sees. A thread's own state dies with it: thread ids are reused, and a new thread
must not inherit a finished thread's choice.
"""
from __future__ import annotations

import os
import threading
import weakref
from typing import Iterator

import torch
import torch.nn as nn

_GLOBAL = 0  # key of the process-wide activation state


def _thread_key() -> int:
    if os.environ.get("USE_UNIQUE_THREAD", "1") != "0" or threading.current_thread() is threading.main_thread():
        return _GLOBAL
    return threading.get_ident()


class TunerLayer(nn.Module):
    """Base class for injected tuner modules (see module docstring)."""

    adapter_attrs: tuple[str, ...] = ()

    def __init__(self, base_layer: nn.Module | None = None) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.merged_adapters: list[str] = []
        self._activation: dict[int, dict[str, bool]] = {}  # thread key -> {adapter: active}
        self._activation_owner: dict[int, weakref.ref] = {}  # thread key -> the thread it belongs to

    def __getattr__(self, name: str):
        """Fall through to the wrapped module, so code around it keeps working
        (`layer.weight`, `decoder_layer.attention_type`, `patch_embeddings.projection.weight.dtype`)."""
        modules = self.__dict__.get("_modules")
        if modules is not None and name in modules:  # the common case first: a submodule
            return modules[name]
        try:
            return super().__getattr__(name)
        except AttributeError:
            base = self._modules.get("base_layer")
            if name == "base_layer" or base is None:
                raise
            return getattr(base, name)

    # ---- adapters held here -------------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        names: dict[str, None] = {}
        for attr in self.adapter_attrs:
            names.update(dict.fromkeys(getattr(self, attr).keys()))
        return list(names)

    def adapter_modules(self, adapter_name: str) -> Iterator[tuple[str, nn.Module | nn.Parameter]]:
        """(attribute, module or parameter) pairs that belong to `adapter_name`."""
        for attr in self.adapter_attrs:
            container = getattr(self, attr)
            if adapter_name in container:
                yield attr, container[adapter_name]

    def adapter_parameters(self, adapter_name: str) -> Iterator[tuple[str, nn.Parameter]]:
        """(name relative to this layer, parameter) of one adapter, e.g. ('lora_A.default.weight', p)."""
        for attr, item in self.adapter_modules(adapter_name):
            if isinstance(item, nn.Parameter):
                yield f"{attr}.{adapter_name}", item
            else:
                for sub, p in item.named_parameters():
                    yield f"{attr}.{adapter_name}.{sub}", p

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name in self.merged_adapters:
            raise ValueError(f"adapter {adapter_name!r} is merged into the weights: unmerge() it before deleting")
        for attr in self.adapter_attrs:
            container = getattr(self, attr)
            if adapter_name in container:
                del container[adapter_name]
        for state in self._activation.values():
            state.pop(adapter_name, None)

    def unwrap(self) -> nn.Module | None:
        """What replaces this layer once it holds no adapter (the original module by default)."""
        return self.base_layer

    # ---- activation (thread aware) -----------------------------------------------------------
    def _thread_state(self, create: bool) -> dict[str, bool] | None:
        """This thread's activation state (None: it never chose; it then sees the process-wide one)."""
        key = _thread_key()
        if key == _GLOBAL:
            return self._activation.setdefault(_GLOBAL, {}) if create else self._activation.get(_GLOBAL)
        owners = self.__dict__.setdefault("_activation_owner", {})
        owner = owners.get(key)
        if owner is not None and owner() is not threading.current_thread():  # a finished thread's id, reused
            self._activation.pop(key, None)
            owners.pop(key, None)
        state = self._activation.get(key)
        if state is None and create:
            for old, ref in list(owners.items()):  # forget finished threads
                thread = ref()
                if thread is None or not thread.is_alive():
                    self._activation.pop(old, None)
                    owners.pop(old, None)
            state = self._activation[key] = dict(self._activation.get(_GLOBAL, {}))
            owners[key] = weakref.ref(threading.current_thread())
        return state

    def set_adapter_active(self, adapter_name: str, active: bool) -> None:
        self._thread_state(create=True)[adapter_name] = active

    def is_active(self, adapter_name: str) -> bool:
        state = self._thread_state(create=False)
        if state is None:
            state = self._activation.get(_GLOBAL, {})
        return state.get(adapter_name, False)

    @property
    def active_adapters(self) -> list[str]:
        """Adapters that take part in this thread's forward (merged ones already sit in the weights)."""
        return [n for n in self.adapter_names if self.is_active(n) and n not in self.merged_adapters]

    # ---- merging (tuners that can merge override these) -------------------------------------
    mergeable: bool = False

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be merged into the base weights")

    def unmerge(self, adapter_name: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be merged into the base weights")

    # ---- helpers for subclasses ----------------------------------------------------------------
    def _base_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        for p in (self.base_layer or self).parameters():
            return p.device, p.dtype
        return torch.device("cpu"), torch.float32

    def extra_repr(self) -> str:
        return f"adapters={self.adapter_names}, merged={self.merged_adapters}"


def tuner_layers(model: nn.Module) -> Iterator[tuple[str, TunerLayer]]:
    """(name, layer) of every tuner layer in `model`."""
    for name, module in model.named_modules():
        if isinstance(module, TunerLayer):
            yield name, module


def canonical_name(root: nn.Module, name: str) -> str:
    """`name` (a module or parameter path inside `root`) without the `base_layer` segments of tuner
    wrappers: the name it has in the model without tuners. `encoder.layer.0.base_layer.attention`
    (an Adapter wraps layer 0) -> `encoder.layer.0.attention`."""
    out: list[str] = []
    module: nn.Module | None = root
    for part in name.split(".") if name else []:
        if part == "base_layer" and isinstance(module, TunerLayer):
            module = module._modules.get("base_layer")
            continue
        out.append(part)
        module = module._modules.get(part) if module is not None else None
    return ".".join(out)


def check_finite(tensor: torch.Tensor, what: str) -> None:
    """Safe-merge guard: refuse to write NaN/inf into base weights."""
    if not torch.isfinite(tensor).all():
        raise ValueError(f"safe_merge: merging {what} would put NaN/inf into the base weights; nothing was changed")
