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
  elsewhere (e.g. `README.md`) or have no link;
- from scratch: a markdown heading (a `#` line) containing "from scratch", followed (before the next
  `## ` heading) by a code cell calling `assert_close(` (`torch.testing.assert_close`), the check of the
  hand-written method against the package's tuner;
- data flow: a code cell draws the method's data flow with `FlowDiagram(` (swiftlite.viz) or a
  package builder whose name ends in `_flow(`, and a code cell calls `save_figure(` with a figure name
  containing `data_flow`;
- seeds: a code cell assigns `SEEDS` (a list, tuple or range, or `A if QUICK else B` / `B if not
  QUICK else A` of those) holding at least 3 seeds in full mode (QUICK false); a tutorial that draws
  no comparison between trained arms is listed, with its reason, in `NO_SEEDS` below;
- exercise checks: under `## Exercises` at least 3 exercises, each a learner's code cell that assigns
  a placeholder `...` followed by a hidden answer cell (`# %% jupyter={"source_hidden": true}`);
  the answer cell assigns none of the names the learner's cell assigns (it checks the learner's value
  before showing the reference, never overwrites it) and reads one of them inside `check_answer(...)`
  or an `assert`;
- words: markdown is written for learners: no "issue", no "minute budget", no "target" as project
  jargon ("issue target", "meets the target", "time target" ...; `target_modules` or a loss's target
  is fine), no pointers to `shared/` files outside the repository.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9]*.py"))
IDS = [p.stem for p in TUTORIALS]
_CELL = re.compile(r"^# %%(.*)$", re.M)


def cells_meta(path: Path) -> list[tuple[str, str, str]]:
    """(kind, header, source) of each cell of a py:percent file; `header` is the text after `# %%`
    (e.g. ` jupyter={"source_hidden": true}`); markdown sources without the leading '# '."""
    text = path.read_text(encoding="utf-8")
    marks = list(_CELL.finditer(text))
    out = []
    for i, mark in enumerate(marks):
        body = text[mark.end(): marks[i + 1].start() if i + 1 < len(marks) else len(text)].strip("\n")
        if "[markdown]" in mark.group(1):
            body = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            out.append(("markdown", mark.group(1), body.strip()))
        else:
            out.append(("code", mark.group(1), body.strip()))
    return out


def cells(path: Path) -> list[tuple[str, str]]:
    """(kind, source) of each cell of a py:percent file; markdown sources without the leading '# '."""
    return [(kind, src) for kind, _, src in cells_meta(path)]


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


def _section(all_cells: list, start: int) -> list:
    """The cells after index `start` up to (not including) the next markdown cell with a `## ` heading."""
    out = []
    for cell in all_cells[start + 1:]:
        if cell[0] == "markdown" and re.search(r"^## ", cell[-1], re.M):
            break
        out.append(cell)
    return out


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_from_scratch(path: Path):
    all_cells = cells(path)
    headings = [i for i, (kind, src) in enumerate(all_cells)
                if kind == "markdown" and re.search(r"^#+ .*from scratch", src, re.M | re.I)]
    assert headings, (f"{path.name}: no markdown heading containing 'from scratch' (e.g. '## Build it from "
                      f"scratch'): write the method in plain PyTorch in the notebook")
    checked = [i for i in headings
               if any(kind == "code" and re.search(r"\bassert_close\(", src) for kind, src in _section(all_cells, i))]
    assert checked, (f"{path.name}: after the 'from scratch' heading (before the next '## ' heading) no code cell "
                     f"compares the hand-written method with the package's tuner via torch.testing.assert_close(")


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_data_flow_figure(path: Path):
    code = _code(path)
    assert any(re.search(r"\bFlowDiagram\(|\b\w+_flow\(", src) for src in code), (
        f"{path.name}: no code cell draws the method's data flow (swiftlite.viz.FlowDiagram( or a package "
        f"builder named *_flow()")
    assert any(re.search(r"\bsave_figure\((?:[^()]|\([^()]*\))*data_flow", src) for src in code), (
        f"{path.name}: no save_figure(fig, 'NN_..._data_flow') call (the data-flow figure's file name must "
        f"contain 'data_flow')")


# Tutorials that compare no trained arms, so no seeds to vary; each with its reason.
NO_SEEDS: dict[str, str] = {
    # the tour follows one adapter's life; its claim (accuracy near the task's ceiling) is asserted on
    # one run, and the lm_head run only explains the loss floor; seeded comparisons start in 01
    "00_tour": "one adapter's life, asserted against an oracle ceiling; no arms ranked",
    # outputs are checked exactly against references, and the CPU timings are medians over repeated
    # rounds (ROUNDS); nothing is trained, so there is no seed to vary
    "14_triton_kernels": "kernels checked against references; timings are medians of repeated rounds",
}


def _parse(src: str) -> ast.Module | None:
    """The cell's syntax tree, or None for a cell that is not plain Python (a cell magic)."""
    try:
        return ast.parse(src)
    except SyntaxError:
        return None


def _full_mode_value(node: ast.expr):
    """The value of a SEEDS expression with QUICK false (only literals, range/list and QUICK allowed)."""
    names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    allowed = {"QUICK": False, "range": range, "list": list, "tuple": tuple}
    unknown = names - set(allowed)
    if unknown:
        raise ValueError(f"SEEDS reads {sorted(unknown)}; write it from literals, range() and QUICK")
    return eval(compile(ast.Expression(node), "<SEEDS>", "eval"), {"__builtins__": {}}, allowed)


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_seeds(path: Path):
    if path.stem in NO_SEEDS:
        pytest.skip(f"{path.stem} compares no trained arms: {NO_SEEDS[path.stem]}")
    values = []
    for src in _code(path):
        tree = _parse(src)
        for node in ast.walk(tree) if tree else []:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SEEDS" for t in node.targets):
                values.append(_full_mode_value(node.value))
    assert values, (f"{path.name}: no `SEEDS = ...` assignment; a tutorial comparing arms runs >= 3 seeds in full "
                    f"mode (e.g. `SEEDS = [0] if QUICK else [0, 1, 2]`), or list it in NO_SEEDS with the reason")
    assert all(len(list(v)) >= 3 for v in values), f"{path.name}: SEEDS in full mode is {values}; use >= 3 seeds"


def _assigned(tree: ast.AST) -> set[str]:
    """Names a cell binds (assignments, for/with targets, walrus, imports)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _assigns_ellipsis(tree: ast.AST) -> bool:
    return any(isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Constant)
               and node.value.value is Ellipsis for node in ast.walk(tree))


def _checks(tree: ast.AST, names: set[str]) -> bool:
    """True when one of `names` is read inside a check_answer(...) call or an assert statement."""
    for node in ast.walk(tree):
        is_check = isinstance(node, ast.Assert) or (
            isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "check_answer")
        if is_check and any(isinstance(n, ast.Name) and n.id in names for n in ast.walk(node)):
            return True
    return False


def _hidden(header: str) -> bool:
    return bool(re.search(r"source_hidden[\"']?\s*[:=]\s*true", header, re.I))


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_exercise_answer_cells(path: Path):
    all_cells = cells_meta(path)
    starts = [i for i, (kind, _, src) in enumerate(all_cells) if kind == "markdown" and re.match(r"## Exercises\b", src)]
    assert starts, f"{path.name}: no markdown cell starting with '## Exercises'"
    section = _section(all_cells, starts[0])
    pairs = 0
    for j, (kind, header, src) in enumerate(section):
        if kind != "code" or not _hidden(header):
            continue
        previous = section[j - 1] if j else None
        assert previous and previous[0] == "code" and not _hidden(previous[1]), (
            f"{path.name}: the hidden answer cell {src.splitlines()[0]!r} must follow the learner's code cell")
        learner, answer = _parse(previous[2]), _parse(src)
        assert learner is not None and answer is not None, f"{path.name}: an exercise cell is not plain Python"
        names = _assigned(learner)
        assert _assigns_ellipsis(learner), (
            f"{path.name}: the learner's cell {previous[2].splitlines()[0]!r} must assign a placeholder `...` "
            f"(e.g. `my_rank = ...  # your answer`)")
        overwritten = names & _assigned(answer)
        assert not overwritten, (f"{path.name}: the answer cell assigns the learner's name(s) {sorted(overwritten)}; "
                                 f"check the learner's value (check_answer) instead of overwriting it")
        assert _checks(answer, names), (
            f"{path.name}: the answer cell after {previous[2].splitlines()[0]!r} does not check the learner's "
            f"{sorted(names)} with check_answer(...) or an assert")
        pairs += 1
    assert pairs >= 3, (f"{path.name}: '## Exercises' has {pairs} learner cell + hidden answer cell pairs "
                        f"(`# %% jupyter={{\"source_hidden\": true}}`); give at least 3")


JARGON = {
    "issue": re.compile(r"\bissues?\b", re.I),
    "minute budget": re.compile(r"\bminute[- ]budget\b", re.I),
    "target (project jargon)": re.compile(
        r"\b(?:issue|project|time|runtime|speed|accuracy|quality|budget)(?:'s)?\s+targets?\b"
        r"|\b(?:meets?|met|hits?|hit|miss(?:es|ed)?|reach(?:es|ed)?|beats?)\s+(?:the|its|our|this)\s+targets?\b"
        r"|^\W*targets?\s*:", re.I | re.M),
    "shared/ path": re.compile(r"\bshared/"),
}


@pytest.mark.parametrize("path", TUTORIALS, ids=IDS)
def test_words_for_learners(path: Path):
    found = []
    for kind, src in cells(path):
        if kind != "markdown":
            continue
        for word, pattern in JARGON.items():
            found += [f"{word}: {m.group(0)!r} in {line.strip()[:70]!r}"
                      for line in src.splitlines() for m in pattern.finditer(line)]
    assert not found, f"{path.name}: markdown holds words meant for contributors, not learners: " + "; ".join(found)
