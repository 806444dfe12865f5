"""Which modules does a config attach to?

ms-swift / PEFT semantics:
- a **string** target is a regular expression that must match the *whole* module name
  (`re.fullmatch`), e.g. `r".*\\.(q_proj|v_proj)"`;
- a **list** matches a module whose name equals an entry or ends with `"." + entry`
  (a dotted suffix), e.g. `["q_proj", "v_proj"]` or `["layers.0.mlp"]`.

When nothing matches, the error lists the closest existing module names with their types, so a
typo is a one-line fix.
"""
from __future__ import annotations

import difflib
import re
from typing import Iterable

import torch.nn as nn

from .config import Target
from .layer import TunerLayer, canonical_name


def name_matches(name: str, target: Target) -> bool:
    """True if module `name` is selected by `target` (see module docstring)."""
    if target is None:
        return False
    if isinstance(target, str):
        return re.fullmatch(target, name) is not None
    return any(name == t or name.endswith("." + t) for t in target)


def _check_target(target: Target, field_name: str, config_name: str) -> None:
    where = f"{config_name}.{field_name}"
    if isinstance(target, str):
        try:
            re.compile(target)
        except re.error as err:
            raise ValueError(f"{where}: {target!r} is not a valid regex ({err})") from None
        if re.fullmatch(target, "") is not None:
            raise ValueError(f"{where}={target!r} also matches the model itself (the empty module name), so it "
                             f"selects the whole model; a tuner attaches to submodules: narrow the regex, e.g. "
                             f"r'.*\\.q_proj' or r'layers\\.\\d+'")
    elif target is not None and (isinstance(target, (bytes, dict)) or not isinstance(target, (list, tuple, set, frozenset))
                                 or not all(isinstance(t, str) for t in target)):
        raise ValueError(f"{where}: expected a regex string or a list of module names, got {target!r}")


def match_modules(
    model: nn.Module,
    target: Target,
    *,
    types: tuple[type, ...] | None = None,
    field_name: str = "target_modules",
    config_name: str = "config",
    skip: Iterable[type] = (),
    skip_unsupported: bool = False,
) -> list[str]:
    """Names of the modules in `model` selected by `target` (and, if given, of one of `types`).

    Modules inside an already injected tuner layer (its `base_layer` and adapter containers) are
    never matched again; a tuner layer itself is matched under the original module's name. The
    model itself (the empty name) is never matched.

    Raises ValueError, listing near misses, when
    - nothing is selected;
    - a list entry selects nothing while others do (a typo such as "q_prj" is not skipped);
    - `types` is given and the target also selects modules of other types (PEFT raises too), unless
      `skip_unsupported` (for a tuner's own catch-all rule such as "every nn.Embedding").
    """
    _check_target(target, field_name, config_name)
    where = f"{config_name}.{field_name}"
    tuner_paths: list[str] = []  # inside a tuner layer only its base_layer's insides are matched ...
    wrapped: set[str] = set()  # ... (not the base_layer itself: the tuner layer stands for it)
    names, wrong_type = [], []
    for name, module in model.named_modules():
        if not name or name in wrapped or any(name.startswith(p + ".") and not any(
                name.startswith(w + ".") for w in wrapped if w.startswith(p + ".")) for p in tuner_paths):
            continue  # the root, or the internals of a tuner layer
        if isinstance(module, TunerLayer):
            tuner_paths.append(name)
            wrapped.add(name + ".base_layer")
            module = module.base_layer if module.base_layer is not None else module
        # Matched under its name in the model without tuners (another tuner's wrapper is invisible).
        if isinstance(module, tuple(skip)) or not name_matches(canonical_name(model, name), target):
            continue
        if types is not None and not isinstance(module, types):
            wrong_type.append(f"{name} ({type(module).__name__})")
            continue
        names.append(name)

    supported = ", ".join(t.__name__ for t in types) if types else "any"
    if wrong_type and (not names or not skip_unsupported):
        listing = ", ".join(wrong_type[:8]) + (f" and {len(wrong_type) - 8} more" if len(wrong_type) > 8 else "")
        if names:
            raise ValueError(
                f"{where}={target!r} also matched modules this tuner cannot attach to: {listing}. Supported "
                f"types: {supported}. Narrow the target to the supported layers (it matched {len(names)} of them, "
                f"e.g. {names[0]})."
            )
        raise ValueError(
            f"{where}={target!r} matched only modules of unsupported types: {listing}. "
            f"Supported types: {supported}. Point the target at those layers."
        )
    if not names:
        raise ValueError(f"{where}={target!r} matched no module. " + nearest_names_hint(model, target))
    if target is not None and not isinstance(target, str):
        unmatched = [t for t in target if not any(name_matches(canonical_name(model, n), [t]) for n in names)]
        if unmatched:
            raise ValueError(
                f"{where}: entr{'y' if len(unmatched) == 1 else 'ies'} {unmatched} matched no module (the other "
                f"entries did). " + nearest_names_hint(model, unmatched)
            )
    return names


def nearest_names_hint(model: nn.Module, target: Target, n: int = 6) -> str:
    """'Closest module names: a.b (Linear), ...' for an error message."""
    modules = {name: type(m).__name__ for name, m in model.named_modules() if name}
    probes = [target] if isinstance(target, str) else list(target or [])
    # Compare both full names and their last segments with each probe (regex chars stripped).
    candidates: list[str] = []
    for probe in probes:
        plain = re.sub(r"[\\^$.*+?()\[\]{}|]", " ", probe).split()
        for word in plain or [probe]:
            last = {name.rsplit(".", 1)[-1]: name for name in modules}
            for hit in difflib.get_close_matches(word, list(last), n=n, cutoff=0.4):
                candidates.append(last[hit])
            candidates += difflib.get_close_matches(word, list(modules), n=n, cutoff=0.4)
    seen = list(dict.fromkeys(candidates))[:n]
    listing = ", ".join(f"{name} ({modules[name]})" for name in seen) or "none"
    # The usual targets are leaf layers: list their distinct short names too (q_proj, fc1, ...).
    leaves = {}
    for name, m in model.named_modules():
        if name and not list(m.children()):
            leaves.setdefault(name.rsplit(".", 1)[-1], type(m).__name__)
    leaf_listing = ", ".join(f"{k} ({v})" for k, v in list(leaves.items())[:16])
    return (
        f"Closest module names: {listing}. Leaf layer names in this model: {leaf_listing}. "
        f"A string target must match the WHOLE name as a regex (e.g. r'.*q_proj'); a list entry must "
        f"equal the name or a dotted suffix of it."
    )


def get_parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(parent module, attribute name) of the submodule called `name`."""
    parent_name, _, child = name.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), child


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put `new` where `name` was; return the old module."""
    parent, child = get_parent(model, name)
    old = getattr(parent, child)
    setattr(parent, child, new)
    return old


def remove_module(model: nn.Module, name: str) -> None:
    """Take module `name` out of its parent (a ModuleList closes the gap: its keys stay 0, 1, ...)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.ModuleList):
        keep = [m for key, m in parent._modules.items() if key != child]
        parent._modules.clear()
        for i, m in enumerate(keep):
            parent._modules[str(i)] = m
    else:
        delattr(parent, child)


def module_list_at(model: nn.Module, path: str, where: str) -> nn.ModuleList:
    """The nn.ModuleList called `path` (a stack of blocks), else one error naming the config field
    `where` (e.g. "ReftConfig.layer_key") and the model's ModuleLists."""
    try:
        stack = model.get_submodule(path)
    except AttributeError:
        stack = None
    if not isinstance(stack, nn.ModuleList):
        lists = [p for p, m in model.named_modules() if isinstance(m, nn.ModuleList) and p]
        raise ValueError(f"{where}={path!r} is not an nn.ModuleList of this model; its ModuleLists: {lists[:6]} "
                         f"(give the dotted path of the block stack, e.g. 'model.layers')")
    return stack
