"""The rendered course: every tutorial executed, then one static site (MkDocs Material + mkdocs-jupyter).

    swiftlite course build                 # full mode: every tutorial as a reader runs it (long)
    swiftlite course build --quick         # quick mode (SWIFTLITE_QUICK=1), as CI does
    swiftlite course build --out DIR       # default: ./course-site
    swiftlite course build --only 00 01    # a subset
    swiftlite course build --keep-going    # a failing notebook does not stop the build (see build)
    swiftlite course build --jobs 2        # two notebooks at a time (one torch thread each by default)
    swiftlite course build --resume        # skip tutorials this folder already ran, unchanged, in this mode
    swiftlite course build --repo-url URL  # links to repository files point at URL/<path>, else plain text
    python -m http.server -d DIR/site      # then open http://localhost:8000

What `build` does:
1. executes each `tutorials/NN_name.ipynb` in number order with nbclient (kernel `python3`, cwd
   `tutorials/`, offline, this checkout first on `PYTHONPATH`, matplotlib's inline backend so the
   figures land in the outputs, `SWIFTLITE_FIGURES` pointing into DIR so the repository's committed
   figures are never overwritten), with a progress bar; a failing cell stops the build naming the
   notebook and the cell;
   Each run is recorded beside the executed notebook (DIR/docs/.runs/NN_name.json: mode, the source
   notebook's SHA-256, seconds, errors), which is what `resume` reads;
2. writes DIR/docs/index.md (the table of contents: each tutorial's title and claim, in number
   order, and how long it took to run) and DIR/mkdocs.yml with the same order as its navigation;
3. runs `mkdocs build` into DIR/site (a folder of static HTML that needs no server logic; open
   `DIR/site/index.html` or serve the folder).

Links from a tutorial to the repository's files (`../swiftlite/tuners/lora.py`, `README.md`) have no
page in the site: with `--repo-url URL` (or `SWIFTLITE_REPO_URL`), e.g.
`https://github.com/OWNER/swiftlite/blob/main`, they point at URL/<path in the repository>; without
one they become plain text naming the path. Links between tutorials point at their pages.

The site works offline: the theme's web fonts are off, and the equations are typeset by a MathJax
copied into DIR/site/assets/mathjax/ from the installed `jupyter-server-mathjax` distribution
(MathJax 2.7, the version nbconvert's HTML template expects); the pages load it by a relative path,
never from a CDN. What still comes from a CDN when online: the ipywidgets renderer (a static page
shows a widget's last text output only; the widgets themselves need a running kernel: use JupyterLab).

Needs the `course` extra: `pip install -e ".[course]"` (mkdocs-material, mkdocs-jupyter,
jupyter-server-mathjax).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import __version__

__all__ = ["CourseError", "Page", "tutorials", "run_tutorials", "render", "build"]

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
CELL_TIMEOUT_S = 1800
# A quick-mode cell takes seconds. Past this the client is taken to be stuck (jupyter's client now and then
# misses a kernel's reply and would wait for it forever), and the notebook runs once more from the top.
QUICK_CELL_TIMEOUT_S = 180


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


def _kernel_env(quick: bool, figures: Path, threads: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "SWIFTLITE_QUICK")}
    if threads and "OMP_NUM_THREADS" not in env:  # notebooks side by side: share the cores, do not oversubscribe
        env["OMP_NUM_THREADS"] = str(threads)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "SWIFTLITE_FIGURES": str(figures),
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)})
    if quick:
        env["SWIFTLITE_QUICK"] = "1"
    return env


def execute(notebook: Path, out: Path, quick: bool, figures: Path, timeout: int = CELL_TIMEOUT_S,
            keep_going: bool = False, threads: int | None = None) -> tuple[float, list[str]]:
    """Run `notebook` top to bottom (see the module docstring) and write it with its outputs to `out`.
    Returns (wall time in seconds, its error outputs). A failing cell raises nbclient's
    CellExecutionError, or with `keep_going` is recorded and the later cells still run."""
    from nbclient.util import run_sync

    return run_sync(_execute)(notebook, out, quick, figures, timeout, keep_going, threads)


async def _execute(notebook: Path, out: Path, quick: bool, figures: Path, timeout: int, keep_going: bool,
                   threads: int | None) -> tuple[float, list[str]]:
    """`execute` as a coroutine: several notebooks run side by side in one event loop (`jobs`)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError

    if quick:
        timeout = min(timeout, QUICK_CELL_TIMEOUT_S)
    for attempt in (1, 2):
        nb = nbformat.read(notebook, as_version=4)
        started = time.perf_counter()
        try:
            await NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=keep_going,
                                 resources={"metadata": {"path": str(notebook.parent)}}
                                 ).async_execute(env=_kernel_env(quick, figures, threads))
            break
        except CellTimeoutError:
            if attempt == 2:
                raise
            warnings.warn(f"{notebook.name}: a cell ran past {timeout} s; running the notebook once more")
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


def _index(pages: list[Page], quick: bool, wall: float | None) -> str:
    mode = "quick mode (`SWIFTLITE_QUICK=1`: fewer steps, numbers not meaningful)" if quick else "full mode"
    total = sum(p.seconds or 0.0 for p in pages)
    timing = f"run times add up to {_duration(total)}" + (f" ({_duration(wall)} wall time)" if wall else "")
    lines = ["# swiftlite: the course", "",
             "Parameter-efficient tuning with readable code: each tutorial states a paper's claim, draws where the "
             "tuner attaches from the real model, runs it on a CPU, checks the result with `assert`s and ends with "
             "exercises. The pages show the outputs of one run; to change a knob, open the notebook in JupyterLab.",
             "", f"Built with swiftlite {__version__} on {time.strftime('%Y-%m-%d %H:%M %Z')}, {mode}: "
             f"{len(pages)} tutorial{'s' if len(pages) != 1 else ''} executed; {timing}.", "",
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
        "exclude_docs": ".runs/",
        "plugins": [{"search": {}}, {"mkdocs-jupyter": {"execute": False, "include_source": False,
                                                       "ignore_h1_titles": True,
                                                       "custom_mathjax_url": MATHJAX_URL}}],
        "markdown_extensions": ["tables"],
    }
    return json.dumps(config, indent=2, ensure_ascii=False)  # JSON is YAML


# MathJax, served from the site itself (pages sit at the site's top level: use_directory_urls is off).
MATHJAX_DIR = "assets/mathjax"
MATHJAX_URL = f"{MATHJAX_DIR}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe,swiftlite-fonts"
# jupyter-server-mathjax ships only the STIX-Web fonts, while MathJax's HTML-CSS output asks for its TeX
# fonts first (a 404, then "[Math Processing Error]"): this config file, listed last in MATHJAX_URL,
# points both outputs at STIX-Web, as the Jupyter server does.
MATHJAX_FONT_CONFIG = """MathJax.Hub.Config({
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null},
  SVG: {font: "STIX-Web"}
});
MathJax.Ajax.loadComplete("[MathJax]/config/swiftlite-fonts.js");
"""


def mathjax_source() -> Path:
    """The folder of MathJax 2.7's files shipped by the `jupyter-server-mathjax` distribution."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        raise OSError("course build needs jupyter-server-mathjax (the offline MathJax for equations): "
                      "pip install -e \".[course]\"") from None
    folder = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (folder / "MathJax.js").is_file():
        raise OSError(f"course build: no MathJax.js in {folder}; reinstall jupyter-server-mathjax")
    return folder


def _copy_mathjax(site: Path) -> Path:
    """Copy MathJax into `site/assets/mathjax` (without its translations: English is built in)."""
    target = site / MATHJAX_DIR
    shutil.copytree(mathjax_source(), target, ignore=shutil.ignore_patterns("localization", "*.md"),
                    dirs_exist_ok=True)
    (target / "config" / "swiftlite-fonts.js").write_text(MATHJAX_FONT_CONFIG)
    return target / "MathJax.js"


class CourseError(OSError):
    """Tutorials failed in a `keep_going` build; the site was written with their errors shown."""


def _select(pages: list[Page], only: list[str] | None) -> list[Page]:
    if not only:
        return pages
    unknown = [o for o in only if not any(p.notebook.stem == o or p.notebook.stem.split("_")[0] == o for p in pages)]
    if unknown:
        raise ValueError(f"course build --only {unknown}: no such tutorial; have {[p.notebook.stem for p in pages]}")
    return [p for p in pages if p.notebook.stem in only or p.notebook.stem.split("_")[0] in only]


def _record_path(docs: Path, notebook: Path) -> Path:
    return docs / ".runs" / f"{notebook.stem}.json"


def _source_sha(notebook: Path) -> str:
    return hashlib.sha256(notebook.read_bytes()).hexdigest()


def _recorded(docs: Path, page: Page, quick: bool) -> dict | None:
    """The record of an earlier successful run of this tutorial's current source in this mode, if any."""
    record_path = _record_path(docs, page.notebook)
    if not record_path.is_file() or not (docs / page.notebook.name).is_file():
        return None
    record = json.loads(record_path.read_text(encoding="utf-8"))
    fresh = record.get("quick") == quick and record.get("source_sha256") == _source_sha(page.notebook)
    return record if fresh and not record.get("errors") else None


async def _run_one(notebook: Path, docs: Path, quick: bool, figures: Path, keep_going: bool,
                   threads: int | None) -> tuple[float, list[str]]:
    """Execute one tutorial into `docs` and record the run."""
    sha = _source_sha(notebook)
    seconds, errors = await _execute(notebook, docs / notebook.name, quick, figures, CELL_TIMEOUT_S, keep_going, threads)
    record = {"quick": quick, "source_sha256": sha, "seconds": seconds, "errors": errors}
    _record_path(docs, notebook).parent.mkdir(exist_ok=True)
    _record_path(docs, notebook).write_text(json.dumps(record, indent=1), encoding="utf-8")
    return seconds, errors


async def _run_all(todo: list[Page], docs: Path, quick: bool, figures: Path, keep_going: bool, jobs: int,
                   bar) -> None:
    """Run `todo`, at most `jobs` kernels at a time, in number order; the first failure (without
    `keep_going`) cancels the rest and is raised."""
    import asyncio

    slots = asyncio.Semaphore(jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None

    async def one(page: Page) -> None:
        async with slots:
            bar.set_postfix_str(page.notebook.stem)
            page.seconds, page.errors = await _run_one(page.notebook, docs, quick, figures, keep_going, threads)
            bar.update()

    tasks = [asyncio.ensure_future(one(page)) for page in todo]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def run_tutorials(out: str | Path = "course-site", quick: bool = False, only: list[str] | None = None,
                  progress: bool = True, keep_going: bool = False, folder: str | Path = TUTORIALS,
                  jobs: int = 1, resume: bool = False) -> list[Page]:
    """Step 1 of `build`: execute the tutorials into OUT/docs (figures into OUT/figures) and return
    their pages with `seconds` and `errors` filled in.

    `jobs`: how many notebooks run at once (each in its own kernel, driven from one event loop);
    unless OMP_NUM_THREADS is set, each kernel then gets (CPU cores / jobs) torch threads.
    `resume`: a tutorial whose executed notebook and run record are already in OUT/docs, from the
    same source notebook, in the same mode and without errors, is not run again (its recorded
    time is reused). Without it OUT/docs starts empty.
    """
    from nbclient.util import run_sync
    from tqdm.auto import tqdm

    if jobs < 1:
        raise ValueError(f"course build --jobs {jobs}: need at least 1 notebook at a time")
    pages = _select(tutorials(Path(folder)), only)
    out = Path(out).resolve()
    docs, figures = out / "docs", out / "figures"
    if docs.exists() and not resume:
        shutil.rmtree(docs)
    docs.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    todo = []
    for page in pages:
        record = _recorded(docs, page, quick) if resume else None
        if record:
            page.seconds, page.errors = record["seconds"], record["errors"]
        else:
            todo.append(page)
    bar = tqdm(total=len(todo), desc=f"executing tutorials ({'quick' if quick else 'full'} mode)",
               disable=not progress or not todo)
    run_sync(_run_all)(todo, docs, quick, figures, keep_going, jobs, bar)
    bar.close()
    return pages


def _needs_mkdocs() -> None:
    try:
        import mkdocs  # noqa: F401
        import mkdocs_jupyter  # noqa: F401
        import material  # noqa: F401
        import jupyter_server_mathjax  # noqa: F401
    except ImportError as err:
        raise OSError(f"course build needs MkDocs Material, mkdocs-jupyter and jupyter-server-mathjax "
                      f"({err.name} is missing): "
                      f"pip install -e \".[course]\"") from None


REPO_URL_ENV = "SWIFTLITE_REPO_URL"  # where the repository's files are browsable, e.g. .../blob/main
_LINK = re.compile(r"(?<!!)\[([^\]\n]+)\]\(([^)\s]+)\)")  # a markdown link, not an image


def source_links(markdown: str, folder: Path, repo_url: str | None) -> str:
    """`markdown` of a tutorial in `folder` with its links to repository files made valid in the site:
    `repo_url/<path in the repository>` when a repository URL is given, else plain text naming the path.
    Web links, anchors and links to other tutorials' pages stay."""
    def fix(match: re.Match) -> str:
        label, target = match[1], match[2]
        if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|#", target) or re.fullmatch(r"\d+_\w+\.(html|ipynb)(#\S*)?", target):
            return match[0]
        path, _, anchor = target.partition("#")
        rel = Path(os.path.relpath(os.path.normpath(folder / path), folder.parent)).as_posix()  # in the repository
        if repo_url:
            return f"[{label}]({repo_url.rstrip('/')}/{rel}{'#' + anchor if anchor else ''})"
        return label if label.strip("`") in (rel, path) else f"{label} (`{rel}`)"

    return _LINK.sub(fix, markdown)


def _fix_source_links(notebook: Path, folder: Path, repo_url: str | None) -> None:
    """Rewrite the links of an executed notebook's markdown cells and markdown outputs (see `source_links`),
    always from the text as the run wrote it (kept in the metadata), so a later render may use another URL."""
    import nbformat

    key = "swiftlite_original_markdown"
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            original = cell.metadata.setdefault(key, cell.source)
            cell.source = source_links(original, folder, repo_url)
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                original = output.setdefault("metadata", {}).setdefault(key, "".join(data["text/markdown"]))
                data["text/markdown"] = source_links(original, folder, repo_url)
    nbformat.write(nb, notebook)


def render(out: str | Path, pages: list[Page], quick: bool, wall: float | None = None,
           repo_url: str | None = None) -> Path:
    """Steps 2 and 3 of `build`: the contents page, mkdocs.yml and the static site from the executed
    notebooks in OUT/docs; returns OUT/site/index.html. Raises CourseError (after writing the site)
    when a page recorded errors. `repo_url` (default: $SWIFTLITE_REPO_URL): see the module docstring."""
    _needs_mkdocs()
    out = Path(out).resolve()
    docs, site = out / "docs", out / "site"
    missing = [p.notebook.name for p in pages if not (docs / p.notebook.name).is_file()]
    if missing:
        raise FileNotFoundError(f"course render: {missing} not executed into {docs}; run run_tutorials first")
    repo_url = repo_url or os.environ.get(REPO_URL_ENV) or None
    for page in pages:
        _fix_source_links(docs / page.notebook.name, page.notebook.parent, repo_url)
    if site.exists():
        shutil.rmtree(site)
    (docs / "index.md").write_text(_index(pages, quick, wall), encoding="utf-8")
    (out / "mkdocs.yml").write_text(_mkdocs_yml(pages), encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(out / "mkdocs.yml")],
                            cwd=out, capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mkdocs build failed in {out}:\n{result.stderr[-3000:]}")
    index = site / "index.html"
    if not index.is_file():
        raise OSError(f"mkdocs build wrote no {index}")
    _copy_mathjax(site)
    failed = [p for p in pages if p.errors]
    if failed:
        raise CourseError("course build: " + "; ".join(f"{p.notebook.stem} failed ({p.errors[0]})" for p in failed)
                          + f"; the site shows where: {index}")
    return index


def build(out: str | Path = "course-site", quick: bool = False, only: list[str] | None = None,
          progress: bool = True, keep_going: bool = False, folder: str | Path = TUTORIALS,
          jobs: int = 1, resume: bool = False, repo_url: str | None = None) -> Path:
    """Execute the tutorials and render the site (see the module docstring); returns DIR/site/index.html.

    `only`: notebook stems or numbers to include (default: all), e.g. `["00_tour"]` or `["00"]`.
    `keep_going`: a failing cell does not stop the build: every notebook runs to its end, the site
    shows the errors where they happened and marks the notebook failed in its index, and then
    `CourseError` names the failed notebooks. Without it the first failing cell stops the build.
    `folder`: where the tutorials are (default: this checkout's `tutorials/`).
    `jobs`, `resume`: see `run_tutorials`. `repo_url`: where links to repository files point (`render`).
    """
    _needs_mkdocs()  # before the long execution, not after
    started = time.perf_counter()
    pages = run_tutorials(out, quick, only, progress, keep_going, folder, jobs, resume)
    return render(out, pages, quick, wall=time.perf_counter() - started, repo_url=repo_url)
