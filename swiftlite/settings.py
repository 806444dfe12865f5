"""swiftlite's two settings read from the environment, each parsed by one rule in one place.

    from swiftlite.settings import quick_mode, cache_dir
    quick_mode()          # SWIFTLITE_QUICK: tests, CI and quick notebook runs use the seconds-long recipes
    cache_dir()           # SWIFTLITE_CACHE, else the platform's user cache folder

``SWIFTLITE_QUICK``: unset, ``""``, ``"0"``, ``"false"``, ``"no"`` and ``"off"`` mean full mode;
``"1"``, ``"true"``, ``"yes"`` and ``"on"`` mean quick mode (case and surrounding spaces ignored).
Any other value is refused with an error naming the variable, so a typo never silently runs the
hour-long full recipes.
"""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["quick_mode", "cache_dir", "QUICK_ENV", "CACHE_ENV"]

QUICK_ENV = "SWIFTLITE_QUICK"
CACHE_ENV = "SWIFTLITE_CACHE"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def quick_mode(quick: bool | None = None) -> bool:
    """``quick`` when given, else what ``$SWIFTLITE_QUICK`` says (see the module docstring)."""
    if quick is not None:
        return bool(quick)
    value = os.environ.get(QUICK_ENV, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{QUICK_ENV}={os.environ[QUICK_ENV]!r}: expected one of {list(_TRUE)} (quick mode) or "
                     f"{list(_FALSE[1:])} / unset (full mode)")


def cache_dir() -> Path:
    """Root of swiftlite's cache: ``$SWIFTLITE_CACHE`` when set, else the platform's user cache folder."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root)
    return Path(platformdirs.user_cache_dir("swiftlite"))
