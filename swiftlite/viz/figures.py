"""Where figures go, and saving them there.

`figures_dir()`:
- `$SWIFTLITE_FIGURES` when set (used as is);
- otherwise `<repo>/figures/`, where `<repo>` is the first folder at or above the current directory
  holding `pyproject.toml` and `swiftlite/` (a notebook runs in `tutorials/`, so this is
  `tutorials/../figures`), or `./figures` outside a checkout;
- in quick mode (:func:`swiftlite.settings.quick_mode`: `SWIFTLITE_QUICK=1`, the CI setting) the
  subfolder `quick/` of that, which ignores itself in git (a `.gitignore` holding `*`), so a smoke
  run never overwrites the figures of a full run.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..settings import quick_mode

__all__ = ["figures_dir", "save_figure"]


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "swiftlite").is_dir():
            return folder
    return None


def figures_dir() -> Path:
    """The folder figures are written to (see the module docstring for the rule)."""
    override = os.environ.get("SWIFTLITE_FIGURES")
    if override:
        return Path(override)
    cwd = Path.cwd().resolve()
    root = _repo_root(cwd)
    folder = (root or cwd) / "figures"
    if quick_mode():
        folder = folder / "quick"
    return folder


def save_figure(fig, name: str, dpi: int = 120) -> Path:
    """Write `fig` to `figures_dir()/<name>.png` (atomically) and return the path."""
    if not name or os.sep in name or "/" in name:
        raise ValueError(f"save_figure(name={name!r}): give a plain file name such as '00_tour_loss'")
    folder = figures_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if folder.name == "quick" and not (folder / ".gitignore").exists() and "SWIFTLITE_FIGURES" not in os.environ:
        (folder / ".gitignore").write_text("*\n")  # quick-mode figures never reach git
    path = folder / (name if name.endswith(".png") else f"{name}.png")
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    os.replace(tmp, path)
    return path
