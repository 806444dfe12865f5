"""Every tutorial runs top to bottom in quick mode, and each .ipynb matches its jupytext .py.

Execution: nbclient, kernel "python3" (in a fresh virtual environment register it once with
`python -m ipykernel install --sys-prefix --name python3`; `.ci/run` does), cwd `tutorials/`,
`SWIFTLITE_QUICK=1`, `MPLBACKEND=Agg`, offline, and `SWIFTLITE_FIGURES` pointing at a temporary
folder so a test run never writes into the repository. The repository root is put first on the
kernel's PYTHONPATH so the notebooks import this checkout's `swiftlite`.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
CELL_TIMEOUT_S = 600


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def test_every_tutorial_is_paired():
    scripts = sorted(TUTORIALS.glob("[0-9]*.py"))
    assert NOTEBOOKS, "no tutorials found"
    assert [p.stem for p in scripts] == [p.stem for p in NOTEBOOKS], "each NN_name.ipynb needs its NN_name.py (jupytext py:percent)"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_in_sync_with_script(notebook: Path):
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(notebook)
    script = jupytext.read(notebook.with_suffix(".py"), fmt="py:percent")

    def cells(book):
        return [(c.cell_type, c.source.strip()) for c in book.cells]

    assert cells(nb) == cells(script), (
        f"{notebook.name} differs from {notebook.with_suffix('.py').name}: "
        f"regenerate with `jupytext --to ipynb {notebook.with_suffix('.py').name}`")
    stored = [c for c in nb.cells if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not stored, f"{notebook.name}: outputs are stored in the notebook; save it without outputs"


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_runs_in_quick_mode(notebook: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    figures = tmp_path / "figures"
    for key, value in {"SWIFTLITE_QUICK": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1",
                       "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "SWIFTLITE_FIGURES": str(figures)}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(TUTORIALS)}})
    client.execute()  # raises CellExecutionError naming the failing cell

    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for name in re.findall(r"save_figure\([^,]+,\s*[\"']([^\"']+)[\"']", source):
        png = figures / (name if name.endswith(".png") else f"{name}.png")
        assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", f"{notebook.name} did not write {png.name}"
