"""Recipes, their hashes, and where built backbones live (shipped with the package or cached).

A *recipe* is a named, versioned function ``build(out_dir, params, progress) -> figures`` plus two
parameter sets (``full`` and ``quick``). Its identity is

    recipe_hash = sha256(json({name, version, quick, params}))

and a built directory carries ``zoo_stamp.json`` with that hash, the measured quality figures and
the build time. :func:`path` resolves a name in this order:

1. quick mode (``quick=True`` or ``SWIFTLITE_QUICK=1``): the cache, building on first use;
2. ``swiftlite/zoo/shipped/<name>/`` when its stamp carries the current full recipe hash;
3. the cache ``<user cache>/zoo/<name>-<hash[:12]>/``, building on first use.

Builds are written to a temporary directory and renamed into place, so an interrupted build
never leaves a directory that looks finished. Change a recipe's code in a way that changes its
result → bump its ``version`` (that invalidates shipped and cached builds).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ..settings import cache_dir, quick_mode
from . import llama, llava, sd, unet, vit  # noqa: F401  (each registers its built-in recipe)
from .recipe import Recipe, registered

STAMP = "zoo_stamp.json"
SHIPPED = Path(__file__).parent / "shipped"


def recipes() -> dict[str, Recipe]:
    """All registered recipes by name (the built-in ones registered when this module was imported)."""
    return registered()


def get_recipe(name: str) -> Recipe:
    known = recipes()
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, list(known), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"no zoo backbone named {name!r}; available: {sorted(known)}.{hint}")
    return known[name]


def read_stamp(directory: str | os.PathLike) -> dict | None:
    p = Path(directory) / STAMP
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def cache_path(name: str, quick: bool) -> Path:
    recipe = get_recipe(name)
    tag = "quick-" if quick else ""
    return cache_dir() / "zoo" / f"{name}-{tag}{recipe.hash(quick)[:12]}"


def _valid(directory: Path, recipe_hash: str) -> bool:
    stamp = read_stamp(directory)
    return stamp is not None and stamp.get("recipe_hash") == recipe_hash


def path(name: str, *, quick: bool | None = None, build_if_missing: bool = True, progress: bool = True) -> Path:
    """The directory of backbone ``name``: shipped build, else cached build, else build it now."""
    recipe = get_recipe(name)
    quick = quick_mode(quick)
    h = recipe.hash(quick)
    if not quick and _valid(SHIPPED / name, h):
        return SHIPPED / name
    cached = cache_path(name, quick)
    if _valid(cached, h):
        return cached
    if not build_if_missing:
        raise FileNotFoundError(f"zoo backbone {name!r} ({'quick' if quick else 'full'}) is not built; "
                                f"run `swiftlite zoo build {name}{' --quick' if quick else ''}`.")
    return build(name, quick=quick, progress=progress)


def build(name: str, quick: bool = False, *, out_dir: str | os.PathLike | None = None,
          progress: bool = True) -> Path:
    """Build ``name`` from scratch (ignoring any existing build) and return its directory.

    ``out_dir=None`` writes to the cache; otherwise ``out_dir`` is replaced by the new build
    (this is how ``swiftlite/zoo/shipped/<name>`` is produced: ``swiftlite zoo build NAME --ship``).
    """
    import torch

    recipe = get_recipe(name)
    params = recipe.params(quick)
    dest = Path(out_dir) if out_dir is not None else cache_path(name, quick)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-{dest.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.perf_counter()
    threads = torch.get_num_threads()
    # one thread: bit-for-bit reproducible builds, and far faster than 2+ threads on a shared CPU
    torch.set_num_threads(1)
    try:
        part_dirs = {part: path(part, quick=quick, progress=progress) for part in recipe.parts}
        figures = recipe.build(tmp, params, progress, part_dirs)
        seconds = time.perf_counter() - start
        import diffusers
        import transformers

        stamp = {
            "name": name, "recipe_hash": recipe.hash(quick), "recipe_version": recipe.version,
            "quick": quick, "params": params, "figures": figures, "targets": recipe.targets,
            "build_seconds": round(seconds, 1), "torch_threads": 1,
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "diffusers": diffusers.__version__},
        }
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2) + "\n")
        if dest.exists():
            if out_dir is None and _valid(dest, recipe.hash(quick)):  # a concurrent build won
                shutil.rmtree(tmp, ignore_errors=True)
                return dest
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def figures(name: str, *, quick: bool | None = None) -> dict:
    """The stamp (figures, build time, params) of the build :func:`path` resolves to."""
    return read_stamp(path(name, quick=quick)) or {}


def load(name: str, *, quick: bool | None = None, progress: bool = True):
    """Load backbone ``name`` (building it on first use); see each recipe for what is returned."""
    return get_recipe(name).load(path(name, quick=quick, progress=progress))


def shipped_build_seconds() -> dict[str, float]:
    """Measured full-build time of each shipped backbone, from its stamp (read without importing the recipes)."""
    stamps = (read_stamp(d) for d in sorted(SHIPPED.iterdir()) if d.is_dir()) if SHIPPED.is_dir() else ()
    return {s["name"]: float(s["build_seconds"]) for s in stamps if s and "build_seconds" in s}


def stamp_lines(stamp: dict, where: str) -> list[str]:
    """A build's stamp as the lines `swiftlite zoo build` / `zoo list` print: a header, then one per figure.

    A quick build says so beside its figures: they come from the seconds-long recipe the tests use and
    are not the quality of the full build."""
    quick = "  [quick]" if stamp.get("quick") else ""
    note = " (quick build: the seconds-long test recipe, not the full model's quality)" if quick else ""
    lines = [f"{stamp.get('name')}: built in {stamp.get('build_seconds')} s -> {where}{note}"]
    for key, value in stamp.get("figures", {}).items():
        target = stamp.get("targets", {}).get(key, "")
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"  {key:28s} {shown:10s} {target}{quick}".rstrip())
    return lines


def list_lines() -> list[str]:
    """What `swiftlite zoo list` prints: each backbone, then every build present (shipped, cached full,
    cached quick) with its headline figures."""
    lines = []
    for name, recipe in sorted(recipes().items()):
        lines.append(f"{name:12s} {recipe.description}")
        found = [("shipped", SHIPPED / name, False), ("cached", cache_path(name, False), False),
                 ("cached", cache_path(name, True), True)]
        present = [(where, d, q) for where, d, q in found if _valid(d, recipe.hash(q))]
        for where, directory, quick in present:
            stamp = read_stamp(directory) or {}
            headline = [k for k in stamp.get("targets", {}) if k in stamp.get("figures", {})]
            shown = ", ".join(f"{k} {stamp['figures'][k]:.4g}" for k in headline)
            lines.append(f"  {'quick' if quick else 'full':5s} {where:7s} {shown}  "
                         f"(built in {stamp.get('build_seconds')} s) {directory}")
        if not present:
            lines.append("  not built: `swiftlite zoo build " + name + "` (or --quick)")
    return lines
