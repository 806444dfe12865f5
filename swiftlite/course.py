"""The rendered course: every tutorial executed, then one static site (MkDocs Material + mkdocs-jupyter).

    swiftlite course build                 # full mode: every tutorial as a reader runs it (long)
    swiftlite course build --quick         # quick mode (SWIFTLITE_QUICK=1), as CI does
    swiftlite course build --out DIR       # default: ./course-site
    swiftlite course build --only 00 01    # a subset
    swiftlite course build --keep-going    # a failing notebook does not stop the build (see build)
    python -m http.server -d DIR/site      # then open http://localhost:8000

What `build` does:
1. executes each `tutorials/NN_name.ipynb` in number order with nbclient (kernel `python3`, cwd
   `tutorials/`, offline, this checkout first on `PYTHONPATH`, matplotlib's inline backend so the
   figures land in the outputs, `SWIFTLITE_FIGURES` pointing into DIR so the repository's committed
   figures are never overwritten), with a progress bar; a failing cell stops the build naming the
   notebook and the cell;
2. writes DIR/docs: the executed notebooks and an `index.md` (the table of contents: each
   tutorial's title and claim, in number order, and how long it took to run), plus DIR/mkdocs.yml
   with the same order as its navigation;
3. runs `mkdocs build` into DIR/site (a folder of static HTML that needs no server logic; open
   `DIR/site/index.html` or serve the folder).

The site works offline: the theme's web fonts are off. What still comes from a CDN when online:
MathJax (equations show as TeX source offline) and the ipywidgets renderer (a static page shows a
widget's last text output only; the widgets themselves need a running kernel: use JupyterLab).

Needs the `course` extra: `pip install -e ".[course]"` (mkdocs-material, mkdocs-jupyter).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CourseError", "Page", "tutorials", "build"]

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CELL_TIMEOUT_S = 1800


@dataclass
class Page:
    """One tutorial in the course."""

    notebook: Path  # tutorials/NN_name.ipynb
    title: str  # "00 · A tour of swiftlite"
    claim: str  # the first cell's **Claim:** paragraph, without the label
    seconds: float | None = None  # execution time of this build
    errors: list[str] | None = None  # error outputs of this build (`keep_going`), "Name: message" each


def _first_markdown(nb: dict) -> str:
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            source = cell["source"]
            return "".join(source) if isinstance(source, list) else source
    return ""


def _page(notebook: Path) -> Page:
    first = _first_markdown(json.loads(notebook.read_text(encoding="utf-8")))
    heading = next((line[2:].strip() for line in first.splitlines() if line.startswith("# ")), notebook.stem)
    claim = re.search(r"\*\*Claim:\*\*(.*?)(?:\n\s*\n|\Z)", first, re.S)
    return Page(notebook, heading, " ".join(claim.group(1).split()) if claim else "")


def tutorials(folder: Path = TUTORIALS) -> list[Page]:
    """The numbered tutorials (`NN_name.ipynb`) in number order."""
    notebooks = sorted(folder.glob("[0-9]*.ipynb"), key=lambda p: (int(p.name.split("_")[0]), p.name))
    if not notebooks:
        raise FileNotFoundError(f"no tutorials (NN_name.ipynb) in {folder}")
    return [_page(nb) for nb in notebooks]


def _kernel_env(quick: bool, figures: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "SWIFTLITE_QUICK")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "SWIFTLITE_FIGURES": str(figures),
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    if quick:
        env["SWIFTLITE_QUICK"] = "1"
    return env


def execute(notebook: Path, out: Path, quick: bool, figures: Path, timeout: int = CELL_TIMEOUT_S,
            keep_going: bool = False) -> tuple[float, list[str]]:
    """Run `notebook` top to bottom (see the module docstring) and write it with its outputs to `out`.
    Returns (wall time in seconds, its error outputs). A failing cell raises nbclient's
    CellExecutionError, or with `keep_going` is recorded and the later cells still run."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    started = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=keep_going,
                   resources={"metadata": {"path": str(notebook.parent)}}).execute(env=_kernel_env(quick, figures))
    seconds = time.perf_counter() - started
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for c in nb.cells if c.cell_type == "code"
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    for cell in nb.cells:  # links between tutorials point at their pages in the site
        if cell.cell_type == "markdown":
            cell.source = re.sub(r"\]\((\d+_\w+)\.ipynb(#[^)\s]*)?\)", r"](\1.html\2)", cell.source)
    nbformat.write(nb, out)
    return seconds, errors


def _duration(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    return f"{minutes} min {s} s" if minutes else f"{s} s"


def _index(pages: list[Page], quick: bool, total: float) -> str:
    from . import __version__

    mode = "quick mode (`SWIFTLITE_QUICK=1`: fewer steps, numbers not meaningful)" if quick else "full mode"
    lines = ["# swiftlite: the course", "",
             "Parameter-efficient tuning with readable code: each tutorial states a paper's claim, draws where the "
             "tuner attaches from the real model, runs it on a CPU, checks the result with `assert`s and ends with "
             "exercises. The pages show the outputs of one run; to change a knob, open the notebook in JupyterLab.",
             "", f"Built with swiftlite {__version__} on {time.strftime('%Y-%m-%d %H:%M %Z')}, {mode}: "
             f"{len(pages)} tutorial{'s' if len(pages) != 1 else ''} executed in {_duration(total)} in all.", "",
             "| tutorial | claim | run time |", "|---|---|---|"]
    for page in pages:
        claim = page.claim.replace("|", "\\|")
        failed = f" **failed**: {len(page.errors)} error output(s)" if page.errors else ""
        lines.append(f"| [{page.title}]({page.notebook.name}) | {claim} | "
                     f"{_duration(page.seconds) if page.seconds is not None else ''}{failed} |")
    return "\n".join(lines) + "\n"


def _mkdocs_yml(pages: list[Page]) -> str:
    nav = [{"Contents": "index.md"}] + [{p.title: p.notebook.name} for p in pages]
    config = {
        "site_name": "swiftlite course",
        "docs_dir": "docs",
        "site_dir": "site",
        "use_directory_urls": False,  # plain files: site/index.html opens from disk too
        "theme": {"name": "material", "font": False,  # no web fonts: the site works offline
                  "features": ["navigation.indexes", "toc.follow"]},
        "nav": nav,
        "plugins": [{"search": {}}, {"mkdocs-jupyter": {"execute": False, "include_source": False,
                                                       "ignore_h1_titles": True}}],
        "markdown_extensions": ["tables"],
    }
    return json.dumps(config, indent=2, ensure_ascii=False)  # JSON is YAML


class CourseError(OSError):
    """Tutorials failed in a `keep_going` build; the site was written with their errors shown."""


def build(out: str | Path = "course-site", quick: bool = False, only: list[str] | None = None,
          progress: bool = True, keep_going: bool = False, folder: str | Path = TUTORIALS) -> Path:
    """Execute the tutorials and render the site (see the module docstring); returns DIR/site/index.html.

    `only`: notebook stems or numbers to include (default: all), e.g. `["00_tour"]` or `["00"]`.
    `keep_going`: a failing cell does not stop the build: every notebook runs to its end, the site
    shows the errors where they happened and marks the notebook failed in its index, and then
    `CourseError` names the failed notebooks. Without it the first failing cell stops the build.
    `folder`: where the tutorials are (default: this checkout's `tutorials/`).
    """
    try:
        import mkdocs  # noqa: F401
        import mkdocs_jupyter  # noqa: F401
        import material  # noqa: F401
    except ImportError as err:
        raise OSError(f"course build needs MkDocs Material and mkdocs-jupyter ({err.name} is missing): "
                      f"pip install -e \".[course]\"") from None
    from tqdm.auto import tqdm

    pages = tutorials(Path(folder))
    if only:
        unknown = [o for o in only if not any(p.notebook.stem == o or p.notebook.stem.split("_")[0] == o for p in pages)]
        if unknown:
            raise ValueError(f"course build --only {unknown}: no such tutorial; have {[p.notebook.stem for p in pages]}")
        pages = [p for p in pages if p.notebook.stem in only or p.notebook.stem.split("_")[0] in only]
    out = Path(out).resolve()
    docs, site, figures = out / "docs", out / "site", out / "figures"
    for folder in (docs, site):
        if folder.exists():
            shutil.rmtree(folder)
    docs.mkdir(parents=True)
    figures.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    bar = tqdm(pages, desc=f"executing tutorials ({'quick' if quick else 'full'} mode)", disable=not progress)
    for page in bar:
        bar.set_postfix_str(page.notebook.stem)
        page.seconds, page.errors = execute(page.notebook, docs / page.notebook.name, quick, figures,
                                            keep_going=keep_going)
    total = time.perf_counter() - started
    (docs / "index.md").write_text(_index(pages, quick, total), encoding="utf-8")
    (out / "mkdocs.yml").write_text(_mkdocs_yml(pages), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(out / "mkdocs.yml")],
                            cwd=out, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mkdocs build failed in {out}:\n{result.stderr[-3000:]}")
    index = site / "index.html"
    if not index.is_file():
        raise OSError(f"mkdocs build wrote no {index}")
    failed = [p for p in pages if p.errors]
    if failed:
        raise CourseError("course build: " + "; ".join(f"{p.notebook.stem} failed ({p.errors[0]})" for p in failed)
                          + f"; the site shows where: {index}")
    return index
