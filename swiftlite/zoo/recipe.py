"""A zoo recipe: a named, versioned, deterministic build of one backbone, and the registry of them.

Its identity is ``recipe_hash = sha256(json({name, version, quick, params}))`` (see
:mod:`swiftlite.zoo.hub` for where builds live). This module imports nothing from swiftlite, so the
recipe modules (``vit``, ``llama``, ``unet``) and the hub both build on it without a circle.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

__all__ = ["Recipe", "register", "registered"]


@dataclass(frozen=True)
class Recipe:
    """How to build one backbone deterministically."""

    name: str
    version: int
    description: str
    full: dict[str, Any]
    quick: dict[str, Any]
    # build(out_dir, params, progress, part_dirs) writes out_dir and returns figures; part_dirs maps each
    # name in `parts` to that backbone's folder (the hub builds it first if needed)
    build: Callable[[Path, dict[str, Any], bool, dict[str, Path]], dict[str, float]]
    load: Callable[[Path], Any]
    targets: dict[str, str] = field(default_factory=dict)  # figure -> claim, e.g. {"accuracy": ">= 0.9"}
    parts: tuple[str, ...] = ()  # backbones this one is built from (llava-tiny: vit-tiny, llama-tiny)

    def params(self, quick: bool) -> dict[str, Any]:
        return dict(self.quick if quick else self.full)

    def hash(self, quick: bool) -> str:
        blob = {"name": self.name, "version": self.version, "quick": quick, "params": self.params(quick)}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()


_RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    """Add ``recipe`` to the zoo (replacing one of the same name); returns it, so it can decorate."""
    _RECIPES[recipe.name] = recipe
    return recipe


def registered() -> dict[str, Recipe]:
    """A copy of the registry: {name: recipe}."""
    return dict(_RECIPES)
