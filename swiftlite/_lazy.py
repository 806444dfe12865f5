"""Lazy package exports from a literal table {name: submodule}: the name's submodule is imported on
first use, so importing the package itself stays light (no torch, matplotlib or diffusers)."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Iterable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str],
                 submodules: Iterable[str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps each public name to the submodule
    defining it; ``dir()`` lists those names and ``submodules``."""
    listed = sorted(set(exports) | set(submodules))

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return list(listed)

    return __getattr__, __dir__
