"""Every tutorial in a real JupyterLab, in a real browser (Debian's chromium driven by Playwright).

What a reader does: open the notebook in `jupyter lab`, Run > Run All Cells, look. The test checks
what they would see: no error output, every ipywidget drawn as a widget (not its text repr such as
`VBox(children=...)`), one interaction per interactive widget changing the output that depends on
it, and each figure drawn as an image. A screenshot of each notebook goes to a folder the test
prints (under pytest's tmp dir, never the repository); JupyterLab runs on copies of the notebooks,
since it saves what it opens.

Setup: `jupyter lab` runs headless on a free port of 127.0.0.1 with a token, `--allow-root`,
isolated config/settings/runtime folders, and the kernel environment of the notebook tests
(`SWIFTLITE_QUICK=1`, offline, figures to a temporary folder) but *without* `MPLBACKEND`, so the
kernel uses matplotlib's inline backend as a reader's would. Skips when chromium, Playwright or
JupyterLab is missing (`.ci/run` installs all three; chromium with `apt-get`, never
`playwright install`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))
RUN_TIMEOUT_S = 600  # one notebook, all cells, quick mode (about a minute each on the 2-core CI machine)
TOKEN = "swiftlite-browser-test"
# The text repr a widget falls back to when the page's widget manager did not draw it.
# (Text/Label/HTML only with `value=`: matplotlib's `Text(0, 0.5, 'loss')` is no widget.)
WIDGET_REPR = re.compile(r"^\s*((HBox|VBox|Box|Dropdown|IntSlider|FloatSlider|ToggleButtons?|Button|Output|FloatProgress|"
                         r"IntProgress|Checkbox|Tab|Accordion)\(|(Text|Label|HTML)\(value=)")
INTERACTIVE = ".widget-dropdown select, .widget-slider, .widget-toggle-button, .widget-toggle-buttons, .widget-checkbox input"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """A running `jupyter lab` server: yields (base_url, figures_dir, screenshots_dir)."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    try:
        subprocess.run([chromium, "--version"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"{chromium} does not run ({e}); reinstall it with apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python not installed (pip install playwright)")
    pytest.importorskip("jupyterlab", reason="JupyterLab not installed (pip install -e '.[notebook]')")
    base = tmp_path_factory.mktemp("browser")
    # $SWIFTLITE_BROWSER_SCREENSHOTS keeps them somewhere lasting (pytest keeps only its last 3 tmp dirs).
    shots = Path(os.environ.get("SWIFTLITE_BROWSER_SCREENSHOTS") or base / "screenshots")
    figures = base / "figures"
    settings = base / "lab-settings"
    shots.mkdir(parents=True, exist_ok=True)
    # No news / update pop-ups over the notebook on a first start.
    notification = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    # Every cell in the DOM (no windowing), so what is checked and screenshotted is the whole notebook.
    tracker = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the inline backend, as for a reader
    env.update({"SWIFTLITE_QUICK": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false", "SWIFTLITE_FIGURES": str(figures),
                "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "JUPYTER_CONFIG_DIR": str(base / "config"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
                "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces")})
    # JupyterLab saves what it opens (autosave, with outputs): run copies, never the repository's notebooks.
    work = base / "work"
    shutil.copytree(TUTORIALS, work / "tutorials", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    port = _free_port()
    log = open(base / "jupyter-lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={work}",
         "--LabApp.expose_app_in_browser=True"],
        env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not start; log:\n{(base / 'jupyter-lab.log').read_text()[-3000:]}")
            time.sleep(0.5)
        print(f"\nbrowser test: screenshots in {shots}")
        yield {"url": url, "figures": figures, "shots": shots, "chromium": chromium}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=lab["chromium"], headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        yield b
        b.close()


# Read the notebook as the browser holds it (JupyterLab's own model), via the app that
# `expose_app_in_browser` puts on `window`.
_JS_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  for (const cell of panel.content.widgets) {
    const m = cell.model;
    if (m.type !== 'code') continue;
    const outs = [];
    for (let i = 0; i < m.outputs.length; i++) outs.push(m.outputs.get(i).toJSON());
    cells.push({count: m.executionCount, outputs: outs});
  }
  const pending = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].filter(e => e.textContent.includes('*'));
  return {status: kernel ? kernel.status : 'none', pending: pending.length, cells};
}"""


# What a widget's output shows a reader: its text and its images (a figure-only output has no text, and
# a redrawn figure may come with the same printed line).
# Images enter as a hash of their data URL (a PNG's last bytes are the same for every figure).
_JS_SHOWN = ("el => el.innerText + [...el.querySelectorAll('img')].map(i => { let h = 0;"
             " for (let j = 0; j < i.src.length; j++) h = (h * 31 + i.src.charCodeAt(j)) | 0;"
             " return '|img:' + i.src.length + ':' + h; }).join('')")


def _wait_idle(page, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    settled, state = 0, {"status": "unknown", "pending": "?"}
    while time.monotonic() < deadline:
        state = page.evaluate(_JS_STATE)
        settled = settled + 1 if state["status"] == "idle" and state["pending"] == 0 else 0
        if settled >= 3:  # idle three polls in a row: the queue is empty, not between two cells
            return state
        page.wait_for_timeout(1000)
    pytest.fail(f"the kernel was not idle after {timeout_s:.0f} s (status {state['status']}, {state['pending']} cells pending)")


def _screenshot(page, path: Path) -> None:
    # The notebook scrolls inside its panel, so a full-page shot would show one screen: make the
    # window as tall as the notebook, shoot, and go back.
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('.jp-WindowedPanel-outer, .jp-Notebook')]"
                           ".map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1280, "height": min(int(height) + 250, 16000)})
    page.evaluate("() => document.querySelectorAll('.jp-WindowedPanel-outer').forEach(e => { e.scrollTop = 0; })")
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1280, "height": 900})


def _error_text(state: dict) -> list[str]:
    found = []
    for i, cell in enumerate(state["cells"]):
        for out in cell["outputs"]:
            if out.get("output_type") == "error":
                found.append(f"code cell {i}: {out.get('ename')}: {out.get('evalue')}")
    return found


def _text_outputs(state: dict) -> list[str]:
    texts = []
    for cell in state["cells"]:
        for out in cell["outputs"]:
            data = out.get("data") or {}
            if "text/plain" in data and "application/vnd.jupyter.widget-view+json" not in data:
                texts.append("".join(data["text/plain"]) if isinstance(data["text/plain"], list) else data["text/plain"])
    return texts


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_in_jupyterlab(notebook: Path, lab, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(f"{lab['url']}/lab/tree/tutorials/{notebook.name}?token={TOKEN}&reset")
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=120_000)
        page.wait_for_function("() => { const p = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                               " return p && p.sessionContext && p.sessionContext.session && p.sessionContext.session.kernel"
                               " && p.sessionContext.session.kernel.status === 'idle'; }", timeout=120_000)
        # Run > Run All Cells, through the menu bar as a reader would.
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        page.locator(".lm-Menu-item .lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        page.wait_for_timeout(2000)
        state = _wait_idle(page, RUN_TIMEOUT_S)
        page.wait_for_timeout(1500)  # let the last outputs and widget views draw
        _screenshot(page, lab["shots"] / f"{notebook.stem}.png")

        errors = _error_text(state)
        assert not errors, f"{notebook.name}: error outputs in the browser: {errors}"
        unrun = [i for i, c in enumerate(state["cells"]) if c["count"] is None]
        assert not unrun, f"{notebook.name}: code cells {unrun} were not executed by Run All Cells"

        # Widgets: every widget output is drawn by the widget manager, none falls back to text.
        widget_outputs = sum(1 for c in state["cells"] for o in c["outputs"]
                             if "application/vnd.jupyter.widget-view+json" in (o.get("data") or {}))
        shown_text = page.locator('.jp-OutputArea-output[data-mime-type="text/plain"]').all_inner_texts()
        reprs = [t[:80] for t in _text_outputs(state) + shown_text if WIDGET_REPR.match(t)]
        assert not reprs, f"{notebook.name}: widgets shown as text, not drawn: {reprs}"
        drawn = page.locator(".jp-OutputArea-output .jupyter-widgets").count()
        assert widget_outputs == 0 or drawn >= widget_outputs, (
            f"{notebook.name}: {widget_outputs} widget outputs but {drawn} drawn .jupyter-widgets elements")
        body = page.locator(".jp-Notebook").inner_text()
        for bad in ("Error displaying widget", "Loading widget...", "model not found"):
            assert bad not in body, f"{notebook.name}: the page says {bad!r}"

        # One interaction per interactive widget: its dependent output must change.
        controls = page.locator(f".jp-OutputArea-output :is({INTERACTIVE})")
        for k in range(controls.count()):
            control = controls.nth(k)
            view = control.locator("xpath=ancestor::div[contains(@class,'jp-OutputArea-output')][1]")
            output = view.locator(".widget-output").first
            before = output.evaluate(_JS_SHOWN)
            tag = control.evaluate("e => e.tagName.toLowerCase()")
            if tag == "select":
                values = control.evaluate("e => [...e.options].map(o => o.value)")
                current = control.input_value()
                control.select_option(next(v for v in values if v != current))
            elif "widget-slider" in (control.get_attribute("class") or ""):
                control.locator(".ui-slider-handle, .noUi-handle").first.press("ArrowRight")
            else:
                control.click()
            page.wait_for_function(f"([el, before]) => ({_JS_SHOWN})(el) !== before",
                                   arg=[output.element_handle(), before], timeout=120_000)
            _wait_idle(page, 120)  # the whole redraw, not its first message (text and figure arrive apart)
            page.wait_for_timeout(500)
            after = output.evaluate(_JS_SHOWN)
            assert after.strip() and after != before, (
                f"{notebook.name}: widget {k} did not change what its output shows ({before[:70]!r})")
            print(f"{notebook.stem}: widget {k}: output {before.strip()[:70]!r} -> {after.strip()[:70]!r}")
        _wait_idle(page, 120)
        state = page.evaluate(_JS_STATE)
        assert not _error_text(state), f"{notebook.name}: an interaction raised: {_error_text(state)}"
        if controls.count():
            _screenshot(page, lab["shots"] / f"{notebook.stem}-after-interaction.png")

        # Figures: each figure the notebook saves is also drawn on the page as an image.
        source = notebook.read_text()
        expected = len(re.findall(r"save_figure\(", source))
        count_loaded = ("() => [...document.querySelectorAll('.jp-OutputArea-output img')]"
                        ".filter(e => e.complete && e.naturalWidth > 0).length")
        try:
            page.wait_for_function(f"() => ({count_loaded})() >= {expected}", timeout=30_000)
        except Exception:  # noqa: BLE001 - the assert below reports the count
            pass
        loaded = page.evaluate(count_loaded)
        assert loaded >= expected, f"{notebook.name}: {expected} figures saved but {loaded} images drawn"
        print(f"{notebook.stem}: {len(state['cells'])} code cells, {widget_outputs} widget outputs, "
              f"{controls.count()} interactions, {loaded} images; screenshot {lab['shots'] / (notebook.stem + '.png')}")
    finally:
        context.close()


def test_course_site_in_the_browser(lab, browser, tmp_path_factory):
    """The rendered course (swiftlite course build, quick mode, every tutorial; built once, shared with
    tests/test_course.py): its index lists all tutorials in order and one tutorial page shows its
    outputs, figures and typeset equations, with every request off this machine refused (offline)."""
    from swiftlite import course
    from tests.test_course import ONE, quick_site

    site = quick_site(tmp_path_factory) / "site"
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(site)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    remote: list[str] = []  # requests that would leave the machine: refused, as offline

    def local_only(route):
        if route.request.url.startswith(f"http://127.0.0.1:{port}/"):
            route.continue_()
        else:
            remote.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("python -m http.server did not serve the course site")
                time.sleep(0.3)
        page.goto(f"http://127.0.0.1:{port}/index.html")
        assert "swiftlite: the course" in page.locator("h1").first.inner_text()
        rows = page.locator("article table tbody tr td:first-child a").all_inner_texts()
        assert [r.split(" · ")[0] for r in rows] == [p.notebook.stem.split("_")[0] for p in course.tutorials()], rows
        page.screenshot(path=str(lab["shots"] / "course-index.png"), full_page=True)
        page.locator("article table tbody tr td:first-child a", has_text=f"{ONE} · ").first.click()
        page.wait_for_load_state("load")
        assert page.url.endswith(".html") and f"/{ONE}_" in page.url
        body = page.locator("article").inner_text()
        assert "Build your own tuner" in body and "SSFLinear matches" in body  # markdown and printed output
        loaded = page.evaluate("() => [...document.querySelectorAll('article img')]"
                               ".filter(e => e.complete && e.naturalWidth > 0).length")
        assert loaded >= 2, f"course page: {loaded} figures drawn"
        typeset = ".MathJax, .MathJax_CHTML, .MathJax_Display, .MathJax_SVG"  # MathJax 2's output elements
        try:
            page.wait_for_function(f"() => document.querySelectorAll('{typeset}').length > 0", timeout=30_000)
        except Exception:  # noqa: BLE001 - the assert below reports it
            pass
        equations = page.evaluate(f"() => document.querySelectorAll('{typeset}').length")
        errors = page.evaluate("() => [...document.querySelectorAll('.MathJax_Error, merror')]"
                               ".map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120))")
        assert equations > 0 and not errors, (
            f"course page: {equations} typeset equations, MathJax errors {errors}, offline (refused: {remote[:5]})")
        page.screenshot(path=str(lab["shots"] / "course-page.png"), full_page=True)
        print(f"course site: index and {page.url.rsplit('/', 1)[-1]} ({loaded} figures, {equations} typeset "
              f"equations offline; refused {len(remote)} remote requests); screenshots in {lab['shots']}")
    finally:
        context.close()
        server.terminate()
        server.wait(timeout=20)
