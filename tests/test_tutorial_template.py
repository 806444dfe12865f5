"""Every numbered tutorial follows the template (../shared TUTORIAL_TEMPLATE, rules in tutorials/README.md).

Read from the jupytext source of truth `tutorials/NN_name.py` (py:percent). One test per rule and
tutorial, so a failure names exactly what is missing where:

- title: the first cell is markdown starting `# NN · Title` (NN = the file's number);
- claim / running time / you will learn: that cell holds `**Claim:**`, `**Running time**` (with
  measured full-mode and quick-mode times: both words and at least two durations) and
  `**You will learn**`;
- diagram: a code cell calls `tuner_diagram(` (swiftlite.viz);
- widget: a code cell builds a widget that re-computes when a knob changes: a swiftlite.viz
  widget helper (`viz.<name>_widget(` / `<name>_widget(` imported from swiftlite.viz) or an
  ipywidgets control wired to a function (`interact(` / `interactive(` / `.observe(`);
- exercises: a markdown cell `## Exercises` followed (before the next `## ` heading) by at least
  3 code cells holding an `assert` statement;
- previous / next: the last markdown cell has `**Previous:**` and `**Next:**`; a link after
  either must be to the neighbouring existing tutorial (`NN_name.ipynb`, the one just before /
  after in number order); the first tutorial's Previous and the last one's Next may point
  elsewhere (e.g. `README.md`) or have no link.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))
IDS = [p.stem for p in TUTORIALS]
_CELL = re.compile(r"^# %%(.*)$", re.M)


def cells(path: Path) -> list[tuple[str, str]]:
    """(kind, source) of each cell of a py:percent file; markdown sources without the leading '# '."""
    text = path.read_text(encoding="utf-8")
    marks = list(_CELL.finditer(text))
    out = []
    for i, mark in enumerate(marks):
        body = text[mark.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip("\n")
        if "[markdown]" in mark.group(1):
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            out.append(("markdown", body.strip()))
        else:
            out.append(("code", body.strip()))
    return out


def _code(path: Path) -> list[str]:
    return [src for kind, src in cells(path) if kind == "code"]


def _first_markdown(path: Path) -> str:
    all_cells = cells(path)
    assert all_cells, f"{path.name}: no '# %%' cells (a jupytext py:percent file?)"
    kind, src = all_cells[0]
    assert kind == "markdown", f"{path.name}: the first cell must be markdown (title, claim, running time)"
    return src


def test_there_are_tutorials():
    assert TUTORIALS, "no tutorials/NN_name.py found"


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_title(path: Path):
    number = path.stem.split("_")[0]
    first_line = _first_markdown(path).splitlines()[0]
    assert re.fullmatch(rf"# {number} · \S.*", first_line), (
        f"{path.name}: the first cell must start with '# {number} · Title', found {first_line!r}")


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_claim(path: Path):
    assert "**Claim:**" in _first_markdown(path), f"{path.name}: the first cell needs '**Claim:**' (the paper's claim)"


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_running_time(path: Path):
    first = _first_markdown(path)
    assert "**Running time**" in first, f"{path.name}: the first cell needs '**Running time**'"
    paragraph = first[first.index("**Running time**"):].split("\n\n")[0]
    durations = re.findall(r"\d+(?:\.\d+)?\s*(?:h|min|s|seconds?|minutes?)\b", paragraph)
    assert "full" in paragraph.lower() and "quick" in paragraph.lower() and len(durations) >= 2, (
        f"{path.name}: the '**Running time**' paragraph must state measured full-mode and quick-mode times "
        f"(found durations {durations})")


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_you_will_learn(path: Path):
    assert "**You will learn**" in _first_markdown(path), f"{path.name}: the first cell needs '**You will learn**'"


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_tuner_diagram(path: Path):
    assert any(re.search(r"\btuner_diagram\(", src) for src in _code(path)), (
        f"{path.name}: no code cell calls tuner_diagram( (swiftlite.viz) to draw where the tuner attaches")


WIDGET_HELPER = re.compile(r"\b\w+_widget\(")
WIRED_WIDGET = re.compile(r"\binteract(?:ive)?\(|\.observe\(")


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_widget(path: Path):
    source = "\n".join(_code(path))
    helpers = set(re.findall(r"\b(\w+_widget)\(", source))
    from swiftlite import viz

    viz_helpers = {h for h in helpers if callable(getattr(viz, h, None))}
    wired = [src for src in _code(path) if "widgets" in src and WIRED_WIDGET.search(src)]
    assert viz_helpers or wired, (
        f"{path.name}: no widget that re-computes when a knob changes: call a swiftlite.viz widget helper "
        f"(e.g. viz.knob_widget, viz.adapter_switch_widget) or wire an ipywidgets control with interact/observe")


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_exercises(path: Path):
    all_cells = cells(path)
    starts = [i for i, (kind, src) in enumerate(all_cells) if kind == "markdown" and re.match(r"## Exercises\b", src)]
    assert starts, f"{path.name}: no markdown cell starting with '## Exercises'"
    checked = 0
    for kind, src in all_cells[starts[0] + 1:]:
        if kind == "markdown" and re.search(r"^## ", src, re.M):
            break  # the next section (Summary)
        if kind == "code" and re.search(r"^\s*assert\b", src, re.M):
            checked += 1
    assert checked >= 3, (f"{path.name}: '## Exercises' is followed by {checked} code cells with an assert; "
                          f"give at least 3 exercises, each with a code cell whose assert checks the answer")


def _links(path: Path, label: str) -> tuple[bool, list[str]]:
    markdown = [src for kind, src in cells(path) if kind == "markdown"]
    last = markdown[-1] if markdown else ""
    found = re.search(rf"\*\*{label}:\*\*(.*?)(?=\*\*(?:Previous|Next):\*\*|\Z)", last, re.S)
    if not found:
        return False, []
    return True, re.findall(r"\]\(([^)\s]+)\)", found.group(1))


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
@pytest.mark.parametrize("label", ["Previous", "Next"])
def test_previous_next(path: Path, label: str):
    present, links = _links(path, label)
    assert present, f"{path.name}: the last markdown cell needs '**{label}:**' (a link to the neighbouring tutorial)"
    index = TUTORIALS.index(path)
    neighbour = index - 1 if label == "Previous" else index + 1
    notebooks = [link for link in links if re.match(r"(?:\./)?\d+_\w+\.ipynb$", link)]
    if 0 <= neighbour < len(TUTORIALS):
        expected = TUTORIALS[neighbour].with_suffix(".ipynb").name
        assert [Path(n).name for n in notebooks] == [expected], (
            f"{path.name}: '**{label}:**' must link to {expected} (the neighbouring tutorial), found {links}")
    else:
        assert not notebooks, f"{path.name} is the {'first' if label == 'Previous' else 'last'} tutorial: " \
                              f"'**{label}:**' links to {notebooks}, which is no neighbour"
    for link in links:
        target = (path.parent / link.split("#")[0]).resolve()
        assert link.startswith(("http://", "https://")) or target.exists(), f"{path.name}: {label} link {link} does not exist"
