"""`swiftlite course build`: the rendered course (swiftlite/course.py).

The build is checked for real in quick mode on one tutorial (01, the fastest: about a minute), so
the suite stays within its budget; `tests/test_notebooks.py` already runs every tutorial in quick
mode, and the order / table of contents of all tutorials is checked without executing them.
`quick_site` is shared with tests/test_browser.py, which opens the built site in chromium.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swiftlite import course
from swiftlite.cli import main

ONE = "01"  # the tutorial the real build executes


def quick_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The course built once per test session in quick mode (tutorial 01 only); returns its folder."""
    pytest.importorskip("mkdocs", reason="the course extra is not installed (pip install -e '.[course]')")
    pytest.importorskip("mkdocs_jupyter", reason="the course extra is not installed (pip install -e '.[course]')")
    out = tmp_path_factory.getbasetemp() / "course-quick"
    if not (out / "site" / "index.html").is_file():
        course.build(out, quick=True, only=[ONE], progress=False)
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
    assert re.search(rf"\| \[{ONE} · [^]]+\]\({page.stem}\.ipynb\) \| .+ \| \d+ (min \d+ )?s \|", docs_index)
    assert (out / "figures" / "01_ssf_vs_lora.png").is_file()  # the run's figures go to the build folder, not figures/


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
