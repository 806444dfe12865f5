"""swiftlite: readable parameter-efficient tuners with ms-swift's API.

    from swiftlite import Swift, LoRAConfig
    model = Swift.prepare_model(model, LoRAConfig(target_modules=["q_proj", "v_proj"]))

Importing this package is light: torch, transformers and diffusers load only when a name that
needs them is first used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_CORE = {"Swift", "SwiftModel", "SwiftConfig", "Tuner", "TunerLayer", "register_tuner", "get_tuner"}
_SUBMODULES = {"core", "tuners", "testing", "data", "zoo", "train", "bench", "viz", "kernels", "diffusion", "llm", "vision"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "show":
        from .core.inspect import show

        return show
    if name in _CORE:
        return getattr(importlib.import_module(f"{__name__}.tuners"), name)
    tuners = importlib.import_module(f"{__name__}.tuners")
    if hasattr(tuners, name):
        return getattr(tuners, name)
    raise AttributeError(f"module 'swiftlite' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _CORE | _SUBMODULES | {"show"})
