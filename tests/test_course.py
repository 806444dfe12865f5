"""`swiftlite course build`: the rendered course (swiftlite/course.py).

The course is built for real in quick mode, with every tutorial, once per test session: each
tutorial is executed once (`quick_run`, which tests/test_notebooks.py's quick-mode test calls, so a
notebook is never run twice in one session), and `quick_site` renders the site from those runs.
`quick_site` is shared with tests/test_browser.py, which opens the built site in chromium.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swiftlite import course
from swiftlite.cli import main

ONE = "01"  # the tutorial page the tests open


def _out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "course-quick"


def quick_run(tmp_path_factory: pytest.TempPathFactory, stem: str) -> tuple[course.Page, Path]:
    """Tutorial `stem` executed in quick mode into this session's course folder (at most once per
    session); returns its page (seconds, errors) and the folder its figures went to."""
    out = _out(tmp_path_factory)
    [page] = course.run_tutorials(out, quick=True, only=[stem], progress=False, keep_going=True, resume=True)
    return page, out / "figures"


def quick_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The course in quick mode, every tutorial (each executed at most once per session), rendered
    once per session; returns its folder."""
    pytest.importorskip("mkdocs", reason="the course extra is not installed (pip install -e '.[course]')")
    pytest.importorskip("mkdocs_jupyter", reason="the course extra is not installed (pip install -e '.[course]')")
    out = _out(tmp_path_factory)
    if not (out / "site" / "index.html").is_file():
        pages = course.run_tutorials(out, quick=True, progress=False, keep_going=True, resume=True)
        course.render(out, pages, quick=True)  # CourseError names any tutorial that failed
    return out


def test_tutorials_in_number_order_with_titles_and_claims():
    pages = course.tutorials()
    numbers = [int(p.notebook.name.split("_")[0]) for p in pages]
    assert numbers == sorted(numbers) and numbers[:3] == [0, 1, 2]
    for page in pages:
        assert page.title.startswith(page.notebook.name.split("_")[0] + " · "), page.title
    assert "LoRA" in pages[0].claim  # the first cell's **Claim:** paragraph, without the label


def test_navigation_follows_the_tutorial_order():
    pages = course.tutorials()
    config = json.loads(course._mkdocs_yml(pages))
    nav = [next(iter(entry.values())) for entry in config["nav"]]
    assert nav == ["index.md"] + [p.notebook.name for p in pages]
    assert config["theme"]["font"] is False  # no web fonts: works offline


@pytest.mark.notebook
def test_quick_build_renders_outputs_figures_and_contents(tmp_path_factory):
    out = quick_site(tmp_path_factory)
    site = out / "site"
    page = next(site.glob(f"{ONE}_*.html"))
    html = page.read_text(encoding="utf-8")
    assert "Build your own tuner" in html
    assert html.count("data:image/png") >= 2  # the tuner diagram and the training figure, from the outputs
    assert "SSFLinear matches" in html  # a printed output of the run
    assert 'href="00_tour.html"' in html and ".ipynb\"" not in html  # links between tutorials point at pages
    index = (site / "index.html").read_text(encoding="utf-8")
    assert page.name in index and "quick mode" in index and "Claim" not in index  # the claim text, not its label
    docs_index = (out / "docs" / "index.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| \[(\d+) · [^]]+\]\((\w+)\.ipynb\) \| .+ \| \d+ (?:min \d+ )?s \|$", docs_index, re.M)
    assert [stem for _, stem in rows] == [p.notebook.stem for p in course.tutorials()]  # every tutorial, in order
    for stem in (p.notebook.stem for p in course.tutorials()):
        assert (site / f"{stem}.html").is_file(), f"no page for {stem}"
    assert (out / "figures" / "01_ssf_vs_lora.png").is_file()  # the run's figures go to the build folder, not figures/
    assert dead_links(site) == []  # links to repository files: plain text (no --repo-url here)


@pytest.mark.notebook
def test_resume_reruns_only_what_changed_or_failed(tmp_path):
    folder = tmp_path / "tutorials"
    folder.mkdir()
    _notebook(folder / "00_one.ipynb", "00 · One", ["import time; print(time.time_ns())"])
    _notebook(folder / "01_two.ipynb", "01 · Two", ["import time; print(time.time_ns())"])
    _notebook(folder / "02_bad.ipynb", "02 · Bad", ["raise ValueError('boom')"])

    def outputs():
        return {p.stem: p.read_text(encoding="utf-8") for p in (tmp_path / "out" / "docs").glob("*.ipynb")}

    first = course.run_tutorials(tmp_path / "out", quick=True, progress=False, keep_going=True, folder=folder)
    assert [bool(p.errors) for p in first] == [False, False, True]
    before = outputs()
    _notebook(folder / "01_two.ipynb", "01 · Two, edited", ["import time; print(time.time_ns())"])
    again = course.run_tutorials(tmp_path / "out", quick=True, progress=False, keep_going=True, folder=folder,
                                 resume=True)
    after = outputs()
    assert after["00_one"] == before["00_one"] and again[0].seconds == first[0].seconds  # unchanged: reused
    assert after["01_two"] != before["01_two"]  # its source changed: run again
    assert after["02_bad"] != before["02_bad"] or again[2].seconds != first[2].seconds  # it failed: run again
    full = course.run_tutorials(tmp_path / "out", quick=False, only=["00"], progress=False, folder=folder, resume=True)
    assert outputs()["00_one"] != after["00_one"] and full[0].errors == []  # another mode: run again
    fresh = course.run_tutorials(tmp_path / "out", quick=True, only=["00"], progress=False, folder=folder)
    assert fresh[0].seconds != full[0].seconds and not (tmp_path / "out" / "docs" / "01_two.ipynb").exists()


@pytest.mark.notebook
def test_two_jobs_run_notebooks_side_by_side_with_shared_threads(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    folder = tmp_path / "tutorials"
    folder.mkdir()
    for n in range(3):
        _notebook(folder / f"0{n}_n{n}.ipynb", f"0{n} · N{n}", ["import os; print('threads', os.environ['OMP_NUM_THREADS'])"])
    pages = course.run_tutorials(tmp_path / "out", quick=True, progress=False, folder=folder, jobs=2)
    assert [p.notebook.stem for p in pages] == ["00_n0", "01_n1", "02_n2"] and all(p.errors == [] for p in pages)
    expected = f"threads {max(1, (__import__('os').cpu_count() or 1) // 2)}"
    for p in pages:
        assert expected in (tmp_path / "out" / "docs" / p.notebook.name).read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="--jobs 0"):
        course.run_tutorials(tmp_path / "out", quick=True, folder=folder, jobs=0)


def test_cli_refuses_an_unknown_tutorial(capsys):
    pytest.importorskip("mkdocs_jupyter", reason="the course extra is not installed")
    assert main(["course", "build", "--quick", "--only", "99", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("swiftlite: error: course build --only ['99']: no such tutorial") and "00_tour" in err


def _notebook(path: Path, title: str, code: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n**Claim:** a test page.")]
    nb.cells += [nbformat.v4.new_code_cell(src) for src in code]
    nbformat.write(nb, path)


@pytest.mark.notebook
def test_keep_going_renders_the_failure_and_then_fails(tmp_path):
    pytest.importorskip("mkdocs_jupyter", reason="the course extra is not installed")
    from nbclient.exceptions import CellExecutionError

    folder = tmp_path / "tutorials"
    folder.mkdir()
    _notebook(folder / "00_fine.ipynb", "00 · Fine", ["print('all good')"])
    _notebook(folder / "01_broken.ipynb", "01 · Broken", ["raise ValueError('boom')", "print('ran after the error')"])
    with pytest.raises(CellExecutionError, match="boom"):
        course.build(tmp_path / "stop", quick=True, progress=False, folder=folder)
    with pytest.raises(course.CourseError, match=r"01_broken failed \(ValueError: boom\)") as err:
        course.build(tmp_path / "going", quick=True, progress=False, keep_going=True, folder=folder)
    assert "00_fine" not in str(err.value)
    site = tmp_path / "going" / "site"
    broken = (site / "01_broken.html").read_text(encoding="utf-8")
    assert "boom" in broken and "ran after the error" in broken
    assert "all good" in (site / "00_fine.html").read_text(encoding="utf-8")
    index = (tmp_path / "going" / "docs" / "index.md").read_text(encoding="utf-8")
    assert re.search(r"01 · Broken.*\*\*failed\*\*: 1 error", index) and "00 · Fine" in index


def dead_links(site: Path) -> list[str]:
    """Every local href / src of the site's pages whose file does not exist (anchors not followed)."""
    from html.parser import HTMLParser
    from urllib.parse import unquote

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.links: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.links += [value for name, value in attrs if name in ("href", "src") and value]

    dead = []
    for page in sorted(site.rglob("*.html")):
        parser = Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for link in parser.links:
            if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:|//", link):  # http(s):, data:, mailto:, javascript:
                continue
            path = unquote(link.split("#")[0].split("?")[0])
            base = site if path.startswith("/") else page.parent  # mkdocs' 404 page links from the site root
            if path and not (base / path.lstrip("/")).exists():
                dead.append(f"{page.relative_to(site)} -> {link}")
    return dead


def test_links_to_repository_files_become_plain_text_or_repo_links():
    folder = Path("/repo/tutorials")
    text = ("See [lora.py](../swiftlite/tuners/lora.py), [`swiftlite/train.py`](../swiftlite/train.py#L10), "
            "[the next tutorial](01_two.html), [the list](README.md), [PEFT](https://github.com/huggingface/peft), "
            "[a check](#check-identity) and ![a figure](figure.png).")
    assert course.source_links(text, folder, None) == (
        "See lora.py (`swiftlite/tuners/lora.py`), `swiftlite/train.py`, [the next tutorial](01_two.html), "
        "the list (`tutorials/README.md`), [PEFT](https://github.com/huggingface/peft), [a check](#check-identity) "
        "and ![a figure](figure.png).")
    url = "https://example.org/swiftlite/blob/main/"
    assert course.source_links(text, folder, url) == (
        f"See [lora.py]({url}swiftlite/tuners/lora.py), [`swiftlite/train.py`]({url}swiftlite/train.py#L10), "
        f"[the next tutorial](01_two.html), [the list]({url}tutorials/README.md), "
        "[PEFT](https://github.com/huggingface/peft), [a check](#check-identity) and ![a figure](figure.png).")


@pytest.mark.notebook
def test_a_rendered_site_has_no_dead_links(tmp_path):
    """A small course whose tutorial links to repository files (in a markdown cell and in a markdown
    output) and to another tutorial, rendered with a repository URL: every local href of the site
    resolves, and repository files are links into the URL (without one, the whole quick course is
    checked in test_quick_build_renders_outputs_figures_and_contents)."""
    pytest.importorskip("mkdocs_jupyter", reason="the course extra is not installed")
    import nbformat

    folder = tmp_path / "tutorials"
    folder.mkdir()
    _notebook(folder / "00_one.ipynb", "00 · One", ["from IPython.display import Markdown; Markdown('[kit](../swiftlite/testing/kit.py)')"])
    nb = nbformat.read(folder / "00_one.ipynb", as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(
        "See [lora.py](../swiftlite/tuners/lora.py), [the next tutorial](01_two.ipynb) and [the list](README.md)."))
    nbformat.write(nb, folder / "00_one.ipynb")
    _notebook(folder / "01_two.ipynb", "01 · Two", ["print(2)"])
    url = "https://example.org/swiftlite/blob/main"
    course.build(tmp_path / "out", quick=True, progress=False, folder=folder, repo_url=url)
    site = tmp_path / "out" / "site"
    assert dead_links(site) == []
    html = (site / "00_one.html").read_text(encoding="utf-8")
    assert 'href="01_two.html"' in html and f'href="{url}/swiftlite/tuners/lora.py"' in html
    assert f'href="{url}/tutorials/README.md"' in html and f'href="{url}/swiftlite/testing/kit.py"' in html


MATHJAX_CDN = re.compile(r"""(?:src|href)=["'](?:https?:)?//[^"']*(?:mathjax|katex)""", re.I)


@pytest.mark.notebook
def test_equations_render_from_a_local_mathjax(tmp_path):
    """The site typesets equations without a network: each page loads MathJax from the site's own
    assets/mathjax (copied from jupyter-server-mathjax), and no page names a CDN for maths."""
    pytest.importorskip("mkdocs_jupyter", reason="the course extra is not installed")
    import nbformat

    folder = tmp_path / "tutorials"
    folder.mkdir()
    _notebook(folder / "00_one.ipynb", "00 · One", ["print(1)"])
    nb = nbformat.read(folder / "00_one.ipynb", as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(r"The update is $h = W_0 x + \frac{\alpha}{r} B A x$."))
    nbformat.write(nb, folder / "00_one.ipynb")
    course.build(tmp_path / "out", quick=True, progress=False, folder=folder)
    site = tmp_path / "out" / "site"
    html = (site / "00_one.html").read_text(encoding="utf-8")
    assert f'src="{course.MATHJAX_URL}"' in html, "the page does not load the site's own MathJax"
    assert not MATHJAX_CDN.search(html), MATHJAX_CDN.search(html)[0]
    configs = course.MATHJAX_URL.split("config=")[1].split(",")  # every config file the URL asks for
    for name in ("MathJax.js", *(f"config/{c}.js" for c in configs)):
        assert (site / course.MATHJAX_DIR / name).is_file(), f"{name} was not copied into the site"
    # the fonts the HTML-CSS output is told to use are the ones that were copied
    assert "STIX-Web" in (site / course.MATHJAX_DIR / "config" / "swiftlite-fonts.js").read_text()
    assert (site / course.MATHJAX_DIR / "jax" / "output" / "HTML-CSS" / "fonts" / "STIX-Web" / "fontdata.js").is_file()
    assert r"\frac{\alpha}{r}" in html  # the TeX is on the page for MathJax to typeset
    assert dead_links(site) == []


def test_a_stuck_cell_reruns_the_notebook_once_then_fails(tmp_path):
    """A cell past its timeout (the client's stand-in for a missed kernel reply) reruns the notebook
    once: a second, normal run is taken; a second timeout raises."""
    import nbformat
    from nbclient.exceptions import CellTimeoutError

    marker = tmp_path / "first-run-done"
    code = (f"import os, time\nif not os.path.exists({str(marker)!r}):\n"
            f"    open({str(marker)!r}, 'w').close()\n    time.sleep(30)\nprint('ran')")
    notebook = tmp_path / "flaky.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)]), notebook)
    with pytest.warns(UserWarning, match="once more"):
        seconds, errors = course.execute(notebook, tmp_path / "out.ipynb", True, tmp_path, timeout=3)
    assert errors == [] and "ran" in (tmp_path / "out.ipynb").read_text()

    stuck = tmp_path / "stuck.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import time; time.sleep(30)")]), stuck)
    with pytest.warns(UserWarning, match="once more"), pytest.raises(CellTimeoutError):
        course.execute(stuck, tmp_path / "out2.ipynb", True, tmp_path, timeout=3)
