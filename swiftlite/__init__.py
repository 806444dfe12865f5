"""swiftlite: readable parameter-efficient tuners with ms-swift's API.

    from swiftlite import Swift, LoRAConfig
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["q_proj", "v_proj"]))

Importing this package is light: torch, transformers and diffusers load only when a name that
needs them is first used.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

__version__ = "0.1.0"

_CORE = {"Swift", "SwiftModel", "SwiftConfig", "Tuner", "TunerLayer", "register_tuner", "get_tuner", "check_finite"}
# The subpackages and modules that exist (read from the folder, so the list cannot name missing ones).
_SUBMODULES = {m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "show":
        from .core.inspect import show

        return show
    if name == "get_tuner":
        return importlib.import_module(f"{__name__}.core").get_tuner
    if name in _CORE:
        return getattr(importlib.import_module(f"{__name__}.tuners"), name)
    tuners = importlib.import_module(f"{__name__}.tuners")
    if hasattr(tuners, name):
        return getattr(tuners, name)
    raise AttributeError(f"module 'swiftlite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(_CORE | _SUBMODULES | {"show", "__version__"})
