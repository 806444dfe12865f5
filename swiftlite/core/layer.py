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

ms-swift style instead: `adapter_prefixes = ("adapter_",)` says each adapter is one child module
named `<prefix><adapter>` (added with `add_adapter_module`)::

    mlp                         <- an Adapter TunerLayer
      base_layer                <- the original module
      adapter_default           <- adapter "default": AdapterModule(linear1, act, linear2)

so its parameters are named `...mlp.adapter_default.linear1.weight`, exactly as ms-swift names them.

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
    # Prefixes of per-adapter child modules `<prefix><adapter>` (see module docstring).
    adapter_prefixes: tuple[str, ...] = ()

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
        for key in self._modules:
            names.update(dict.fromkeys(key[len(p):] for p in self.adapter_prefixes if key.startswith(p)))
        return list(names)

    def add_adapter_module(self, prefix: str, adapter_name: str, module: nn.Module) -> None:
        """Register `module` as adapter `adapter_name`'s child `<prefix><adapter_name>` (a prefix of
        `adapter_prefixes`)."""
        if prefix not in self.adapter_prefixes:
            raise ValueError(f"{type(self).__name__}: prefix {prefix!r} is not in adapter_prefixes {self.adapter_prefixes}")
        if hasattr(type(self), prefix + adapter_name) or prefix + adapter_name in self.__dict__:
            raise ValueError(f"adapter_name={adapter_name!r}: {type(self).__name__} would keep it as "
                             f"{prefix + adapter_name!r}, which is already an attribute; pick another name")
        self.add_module(prefix + adapter_name, module)

    def is_adapter_attribute(self, name: str) -> bool:
        """Is the child / attribute `name` of this layer an adapter's (a container or a prefixed module)?"""
        return name in self.adapter_attrs or any(
            name.startswith(p) and name[len(p):] in self.adapter_names for p in self.adapter_prefixes)

    def adapter_modules(self, adapter_name: str) -> Iterator[tuple[str, nn.Module | nn.Parameter]]:
        """(attribute, module or parameter) pairs that belong to `adapter_name`; the attribute of a
        prefixed child is its own name (`adapter_default`)."""
        for attr in self.adapter_attrs:
            container = getattr(self, attr)
            if adapter_name in container:
                yield attr, container[adapter_name]
        for prefix in self.adapter_prefixes:
            if prefix + adapter_name in self._modules:
                yield prefix + adapter_name, self._modules[prefix + adapter_name]

    def adapter_parameters(self, adapter_name: str) -> Iterator[tuple[str, nn.Parameter]]:
        """(name relative to this layer, parameter) of one adapter, e.g. ('lora_A.default.weight', p)
        or, for a prefixed child, ('adapter_default.linear1.weight', p)."""
        for attr, item in self.adapter_modules(adapter_name):
            path = attr if attr not in self.adapter_attrs else f"{attr}.{adapter_name}"
            if isinstance(item, nn.Parameter):
                yield path, item
            else:
                for sub, p in item.named_parameters():
                    yield f"{path}.{sub}", p

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name in self.merged_adapters:
            raise ValueError(f"adapter {adapter_name!r} is merged into the weights: unmerge() it before deleting")
        for attr in self.adapter_attrs:
            container = getattr(self, attr)
            if adapter_name in container:
                del container[adapter_name]
        for prefix in self.adapter_prefixes:
            self._modules.pop(prefix + adapter_name, None)
        for state in self._activation.values():
            state.pop(adapter_name, None)

    def unwrap(self) -> nn.Module | None:
        """What replaces this layer once it holds no adapter (the original module by default)."""
        return self.base_layer

    def follow_base_training_mode(self) -> None:
        """New modules are built in training mode; give this layer's own modules (not the wrapped one's)
        the mode of the module it wraps, so an eval-mode model stays deterministic (no LoRA dropout)
        after prepare_model. PEFT leaves them in training mode until the next `.eval()`."""
        if self.base_layer is None:
            return
        inside_base = {id(m) for m in self.base_layer.modules()}
        for module in self.modules():
            if id(module) not in inside_base:
                module.training = self.base_layer.training

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
        activation = self._activation
        if len(activation) == 1 and _GLOBAL in activation:  # no thread chose for itself: one state for all
            state = activation[_GLOBAL]  # (the fast path: every forward of every tuner layer asks)
        else:
            state = self._thread_state(create=False)
            state = activation.get(_GLOBAL, {}) if state is None else state
        return [n for n in self.adapter_names if state.get(n, False) and n not in self.merged_adapters]

    # ---- merging (tuners that can merge override `merge`, and `unmerge` or `keep_pre_merge`) ------
    mergeable: bool = False
    # The one generic undo scheme: with `keep_pre_merge = True`, `merge_adapter` keeps the base
    # layer's tensors as they were before each merge, and `unmerge_adapter` puts them back exactly
    # (then merges again the adapters merged after it), so the tuner writes only `merge` — the math.
    # Costs one copy of the base layer's tensors per merged adapter.
    keep_pre_merge: bool = False
    merges_quantized: bool = False  # True: `merge` handles a quantized base layer itself (LoRA: tuners/lora/quantized.py)

    def merge(self, adapter_name: str, safe_merge: bool = True) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be merged into the base weights")

    def unmerge(self, adapter_name: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be merged into the base weights")

    def merge_adapter(self, adapter_name: str, safe_merge: bool = True) -> None:
        """`merge` plus bookkeeping (`merged_adapters`, pre-merge tensors). SwiftModel calls this."""
        packed = [n for n, p in (self.base_layer.named_parameters() if self.base_layer is not None else [])
                  if not p.is_floating_point()]
        if packed and not self.merges_quantized:  # W.data * s on packed integers would be garbage
            raise NotImplementedError(f"{type(self).__name__} cannot merge into the quantized "
                                      f"{type(self.base_layer).__name__} ({packed[0]} is {self.base_layer.get_parameter(packed[0]).dtype}); "
                                      f"merge into a full-precision base instead")
        if self.keep_pre_merge:
            pre = {k: t.detach().clone() for k, t in self._merge_base().state_dict().items()}
            try:
                self.merge(adapter_name, safe_merge=safe_merge)
            except BaseException:
                self._merge_base().load_state_dict(pre)
                raise
            self.__dict__.setdefault("_pre_merge", {})[adapter_name] = pre
        else:
            self.merge(adapter_name, safe_merge=safe_merge)
        self.merged_adapters.append(adapter_name)

    def unmerge_adapter(self, adapter_name: str) -> None:
        """Undo `merge_adapter` (the adapter is still in `merged_adapters` while `unmerge` runs)."""
        pre_merge = self.__dict__.get("_pre_merge", {})
        if adapter_name not in pre_merge:
            self.unmerge(adapter_name)
            self.merged_adapters.remove(adapter_name)
            return
        at = self.merged_adapters.index(adapter_name)
        later = self.merged_adapters[at + 1:]
        self._merge_base().load_state_dict(pre_merge[adapter_name])  # exactly as before it was merged
        for name in [adapter_name, *later]:
            pre_merge.pop(name, None)
        del self.merged_adapters[at:]
        for name in later:  # merged after it: fold them in again
            self.merge_adapter(name, safe_merge=False)

    def _merge_base(self) -> nn.Module:
        """The module whose tensors a merge writes (the wrapped module by default)."""
        if self.base_layer is None:
            raise NotImplementedError(f"{type(self).__name__}: keep_pre_merge needs a base_layer to snapshot")
        return self.base_layer

    # ---- helpers for subclasses ----------------------------------------------------------------
    def _base_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        """Device and dtype for new adapter weights: the wrapped module's first parameter's device and first
        floating-point dtype (a quantized layer's packed uint8 / int8 weight gives no dtype; float32 then)."""
        params = list((self.base_layer or self).parameters())
        device = params[0].device if params else torch.device("cpu")
        return device, next((p.dtype for p in params if p.is_floating_point()), torch.float32)

    def extra_repr(self) -> str:
        return f"adapters={self.adapter_names}, merged={self.merged_adapters}"


class HookedAdapter(TunerLayer):
    """A tuner module that holds exactly one adapter, attached to the model as a child of its own and
    wired in by forward hooks (`handles`) instead of wrapping a module: ResTuning's bypass, SCEdit's
    condition encoder. Its weights are the child named by `weights_attribute`; `clear_state` drops
    what the hooks keep between calls."""

    weights_attribute: str = ""

    def __init__(self, adapter_name: str) -> None:
        super().__init__(None)
        self.adapter_name: str | None = adapter_name
        self.handles: list = []

    @property
    def adapter_names(self) -> list[str]:
        return [self.adapter_name] if self.adapter_name is not None else []

    def adapter_modules(self, adapter_name: str):
        if adapter_name == self.adapter_name:
            yield self.weights_attribute, getattr(self, self.weights_attribute)

    def is_adapter_attribute(self, name: str) -> bool:
        return name == self.weights_attribute and self.adapter_name is not None

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        if adapter_name == self.adapter_name:
            for handle in self.handles:
                handle.remove()
            self.handles.clear()
            self.clear_state()
            self.adapter_name = None

    def clear_state(self) -> None:
        """Forget per-call state kept by the hooks (subclasses override)."""

    def unwrap(self) -> None:
        return None  # nothing was wrapped: the child is simply removed


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
