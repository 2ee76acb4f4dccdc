"""Support code for the browser tests: a JupyterLab server on a copy of the course, and Chromium.

The server always serves a temporary copy of the course, so that nothing the browser saves (JupyterLab saves
notebooks, nbgrader's Validate saves before validating) can touch the repository.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The course's environment (where ./course set it up), else the one running the tests.
VENV_BIN = ROOT / ".venv" / "bin" if (ROOT / ".venv" / "bin" / "jupyter").exists() else Path(sys.executable).parent
CHROMIUM = Path(os.environ.get("LRDIFF_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "test-artifacts"

# Keep Chromium quiet and off the network: nothing but 127.0.0.1 resolves.
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests may run as root (CI containers); the profile is a fresh temporary one
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]

# Paths of the course that the server copy never needs (and that must not leak state into it).
_NEVER_COPY = {".git", ".venv", ".work", ".ci", "test-artifacts", "__pycache__", ".pytest_cache",
               ".ipynb_checkpoints", "gradebook.db", "gradebook.db-journal", "submitted", "autograded",
               "feedback", "lrdiff.egg-info"}


def course_root() -> Path:
    """The course to serve: the repository, or LRDIFF_BROWSER_COURSE (used to develop these tests)."""
    return Path(os.environ.get("LRDIFF_BROWSER_COURSE", ROOT)).resolve()


def copy_course(src: Path, dst: Path) -> None:
    """Copy the course's files (tracked and untracked-but-not-ignored, as git sees them) into dst."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "."],
            cwd=src, check=True, capture_output=True, timeout=60,
        ).stdout.decode()
        files = [Path(p) for p in out.split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        files = []
    if not files:  # not a git checkout (an unpacked archive), or a folder git ignores
        files = [p.relative_to(src) for p in src.rglob("*") if p.is_file()]
    dst.mkdir(parents=True, exist_ok=True)
    for rel in files:
        if _NEVER_COPY.intersection(rel.parts):
            continue
        s = src / rel
        if not s.is_file():  # deleted in the work tree but still in the index
            continue
        d = dst / rel
        d.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(s, d)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _user_settings(settings_dir: Path) -> None:
    """JupyterLab user settings for a quiet, deterministic UI."""
    def put(plugin: str, values: dict) -> None:
        pkg, name = plugin.split(":")
        path = settings_dir / pkg / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))

    # No "would you like news?" toast over the notebook; nothing fetched from the internet.
    put("@jupyterlab/apputils-extension:notification", {"fetchNews": "false", "checkForUpdates": False})
    # Keep every cell in the DOM (no virtual scrolling), so that outputs can be counted.
    put("@jupyterlab/notebook-extension:tracker", {"windowingMode": "none"})


@dataclass
class LabServer:
    """A running `jupyter lab` on a copy of the course."""

    root: Path            # the served copy (the server's root_dir and working directory)
    base_url: str         # http://127.0.0.1:PORT
    token: str
    log_path: Path
    proc: subprocess.Popen = field(repr=False)

    def url(self, path: str = "") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base_url}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET", timeout: float = 10) -> object:
        req = urllib.request.Request(
            f"{self.base_url}/{path.lstrip('/')}", method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every session and kernel (between tests: no kernel, nor its state, outlives its test)."""
        for sess in self.api("api/sessions") or []:
            self.api(f"api/sessions/{sess['id']}", method="DELETE", timeout=30)
        for kernel in self.api("api/kernels") or []:
            self.api(f"api/kernels/{kernel['id']}", method="DELETE", timeout=30)

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    # Isolated from the user's own Jupyter config, data, runtime and IPython profile; the course's kernel
    # "lrdiff" and the lab/server extensions come from the venv (sys.prefix), which Jupyter always searches.
    env["JUPYTER_CONFIG_DIR"] = str(home / "config")
    env["JUPYTER_DATA_DIR"] = str(home / "data")
    env["JUPYTER_RUNTIME_DIR"] = str(home / "runtime")
    env["JUPYTERLAB_SETTINGS_DIR"] = str(home / "lab-settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(home / "workspaces")
    env["IPYTHONDIR"] = str(home / "ipython")
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    env.pop("LRDIFF_GRADEBOOK_URL", None)  # the copy's gradebook lives in the copy, never the instructor's
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_PREFER_ENV_PATH", None)
    env["PYTHONHASHSEED"] = "0"
    return env


def start_lab(root: Path, home: Path, timeout: float = 120) -> LabServer:
    """Start `jupyter lab` serving root (with cwd=root, so nbgrader reads root/nbgrader_config.py)."""
    for d in ("config", "data", "runtime", "lab-settings", "workspaces", "ipython"):
        (home / d).mkdir(parents=True, exist_ok=True)
    _user_settings(home / "lab-settings")
    (home / "config" / "jupyter_server_config.py").write_text(
        "c = get_config()\n"
        "c.ServerApp.open_browser = False\n"
        "c.ServerApp.port_retries = 0\n"
        "c.LabApp.news_url = None\n"
        "c.LabApp.check_for_updates_class = 'jupyterlab.NeverCheckForUpdate'\n"
        "c.FileContentsManager.delete_to_trash = False\n"
    )
    env = server_env(home)
    token = secrets.token_hex(16)
    log_path = home / "jupyter-server.log"
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        log = open(log_path, "ab")
        proc = subprocess.Popen(
            [str(VENV_BIN / "jupyter"), "lab", "--no-browser",
             f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
             "--ServerApp.allow_root=True"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        server = LabServer(root=root, base_url=f"http://127.0.0.1:{port}", token=token,
                           log_path=log_path, proc=proc)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                server.api("api/status", timeout=2)
                return server
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        last_error = server.log_tail()
        stop_lab(server)
        if "already in use" not in last_error:  # only a lost race for the port is worth another try
            break
    raise RuntimeError(f"jupyter lab did not start; its log ends with:\n{last_error}")


def _descendants(pid: int) -> list:
    try:
        import psutil
    except ImportError:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def stop_lab(server: LabServer, timeout: float = 20) -> None:
    """Shut the server down (its kernels too); leave no process of ours behind."""
    proc = server.proc
    if proc.poll() is not None:
        return
    children = _descendants(proc.pid)  # kernels run in their own sessions: remember them now
    try:
        server.api("api/shutdown", method="POST", timeout=5)  # shuts kernels down cleanly
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    for child in children:
        try:
            child.wait(timeout=5)
        except Exception:  # noqa: BLE001 - psutil's NoSuchProcess/TimeoutExpired: kill what is left
            try:
                child.kill()
            except Exception:  # noqa: BLE001
                pass


# ---------------------------------------------------------------------------------------------------------
# What a committed notebook leads us to expect on screen
# ---------------------------------------------------------------------------------------------------------

# JupyterLab shows, of an output's mime types, the one it ranks first (rendermime's default ranks).
_MIME_RANK = ["application/vnd.jupyter.widget-view+json", "text/html", "text/markdown", "text/latex",
              "image/svg+xml", "image/png", "image/jpeg", "image/gif", "text/plain"]


@dataclass
class Expected:
    """What running a notebook in JupyterLab should show, read off its committed outputs."""

    executed: bool      # committed with outputs (else there is nothing to compare with)
    code_cells: int     # code cells with something to run (JupyterLab skips empty ones)
    images: int         # outputs JupyterLab renders as an image (matplotlib figures)
    tables: int         # <table> elements in outputs it renders as HTML
    widgets: int        # widget views (tqdm.auto progress bars)
    stderr: int         # stderr streams and errors committed outside cells tagged raises-exception
    raises: set[int] = field(default_factory=set)  # indices of cells tagged raises-exception (nbval's tag,
                                                   # which JupyterLab's Run All honours too: it goes on)


def expected_from(nb_path: Path) -> Expected:
    nb = json.loads(nb_path.read_text())
    exp = Expected(False, 0, 0, 0, 0, 0)
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if "raises-exception" in cell.get("metadata", {}).get("tags", []):
            exp.raises.add(index)
        exp.executed = exp.executed or cell.get("execution_count") is not None
        src = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        if src.strip():
            exp.code_cells += 1
        for out in cell.get("outputs", []):
            if out["output_type"] == "error" or (out["output_type"] == "stream" and out.get("name") == "stderr"):
                exp.stderr += index not in exp.raises
                continue
            data = out.get("data", {})
            mime = next((m for m in _MIME_RANK if m in data), None)
            if mime == "application/vnd.jupyter.widget-view+json":
                exp.widgets += 1
            elif mime == "text/html":
                html = data[mime] if isinstance(data[mime], str) else "".join(data[mime])
                exp.tables += html.lower().count("<table")
            elif mime is not None and mime.startswith("image/"):
                exp.images += 1
    return exp


# ---------------------------------------------------------------------------------------------------------
# Driving JupyterLab
# ---------------------------------------------------------------------------------------------------------

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"   # the notebook in the active tab

_JS_STATE = """
(sel) => {
  const panel = document.querySelector(sel);
  if (!panel) return null;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
      .map(e => e.textContent.trim());
  const outputs = [...panel.querySelectorAll('.jp-OutputArea-output')];
  const cells = [...panel.querySelectorAll('.jp-Notebook .jp-Cell')];
  const stderr = outputs.filter(o => o.dataset.mimeType === 'application/vnd.jupyter.stderr');
  const images = [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type^="image/"] img')];
  const ind = panel.querySelector('.jp-Notebook-ExecutionIndicator');
  return {
    prompts,
    busy: prompts.filter(p => p.includes('*')).length,
    counts: prompts.map(p => (p.match(/^\\[(\\d+)\\]/) || [])[1]).filter(Boolean).map(Number),
    status: ind ? ind.dataset.status : null,
    stderr: stderr.map(o => [cells.indexOf(o.closest('.jp-Cell')), o.innerText.slice(0, 2000)]),
    images: images.length,
    imagesLoaded: images.filter(i => i.complete && i.naturalWidth > 0).length,
    tables: panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="text/html"] table').length,
    widgets: panel.querySelectorAll('.jp-OutputArea-output > .jupyter-widgets').length,
    widgetErrors: outputs.filter(o => /Error displaying widget|Error rendering output item/
        .test(o.innerText)).map(o => o.innerText.slice(0, 500)),
    kernel: (panel.querySelector('.jp-Toolbar-kernelName') || {}).textContent,
  };
}
"""


def notebook_state(page) -> dict:
    return page.evaluate(_JS_STATE, NOTEBOOK)


def lab_url(server: LabServer, path: str = "") -> str:
    """JupyterLab in a workspace of its own, so that no tab of an earlier test is restored."""
    workspace = f"t{secrets.token_hex(4)}"
    return server.url(f"lab/workspaces/{workspace}" + (f"/tree/{path}" if path else ""))


def open_notebook(page, server: LabServer, relpath: str, timeout_ms: int = 120_000) -> None:
    """Open relpath in JupyterLab and wait until its kernel has started and is idle."""
    page.goto(lab_url(server, relpath))
    page.locator(f"{NOTEBOOK} .jp-Notebook").wait_for(state="visible", timeout=timeout_ms)
    # Done when a kernel is connected and idle, or when a dialog (e.g. "Select Kernel") asks for a choice.
    page.wait_for_function(
        """(sel) => {
             if (document.querySelector('.jp-Dialog')) return true;
             const p = document.querySelector(sel); if (!p) return false;
             const k = p.querySelector('.jp-Toolbar-kernelName');
             const i = p.querySelector('.jp-Notebook-ExecutionIndicator');
             const name = k ? k.textContent.trim() : '';
             return name !== '' && name !== 'No Kernel' && name !== 'Kernel'
                    && i && i.dataset.status === 'idle';
           }""",
        arg=NOTEBOOK, timeout=timeout_ms, polling=250,
    )


def snapshot(page, name: str) -> None:
    """Save a screenshot to test-artifacts/ when LRDIFF_BROWSER_SCREENSHOTS is set (to look at a run)."""
    if os.environ.get("LRDIFF_BROWSER_SCREENSHOTS"):
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def scroll_to_first(page, *selectors: str) -> None:
    """Scroll the first element matching one of selectors (tried in order) into view, for the screenshot."""
    for sel in selectors:
        loc = page.locator(f"{NOTEBOOK} {sel}")
        if loc.count():
            loc.first.scroll_into_view_if_needed()
            return


def open_dialogs(page) -> list[str]:
    return page.locator(".jp-Dialog").all_inner_texts()


def menu_command(page, menu: str, command: str) -> None:
    """Click a main-menu item, e.g. menu_command(page, "Run", "runmenu:run-all")."""
    page.locator("#jp-MainMenu .lm-MenuBar-itemLabel", has_text=menu).first.click()
    page.locator(f'.lm-Menu:visible li.lm-Menu-item[data-command="{command}"]').first.click()


def run_all_and_wait(page, expected_cells: int, timeout_ms: int) -> dict:
    """Run -> Run All Cells, then wait until every cell ran (or one failed) and the kernel is idle."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate(_JS_WATCH_WIDGETS, NOTEBOOK)
    menu_command(page, "Run", "runmenu:run-all")
    try:
        _wait_until_run_finished(page, expected_cells, timeout_ms)
    except PlaywrightTimeout:
        state = notebook_state(page)
        scroll_to_first(page, ".jp-CodeCell:has(.jp-InputPrompt:text-is('[*]:'))")
        running = page.locator(f"{NOTEBOOK} .jp-CodeCell:has(.jp-InputPrompt:text-is('[*]:')) .cm-content")
        head = running.first.inner_text()[:300] if running.count() else "(none)"
        raise AssertionError(
            f"Run All Cells did not finish in {timeout_ms / 1000:.0f} s "
            f"(LRDIFF_BROWSER_RUN_TIMEOUT sets the limit): {len(state['counts'])} of {expected_cells} "
            f"code cells ran, kernel {state['status']}; still running:\n{head}"
        ) from None
    state = notebook_state(page)
    state["widgetsSeen"] = page.evaluate("() => window.__lrdiffWidgetsSeen || 0")
    return state


# Progress bars that close when done (tqdm's leave=False) leave the DOM again: count every widget view that
# was ever rendered into an output during the run.
_JS_WATCH_WIDGETS = """
(sel) => {
  window.__lrdiffWidgetsSeen = 0;
  const panel = document.querySelector(sel);
  const obs = new MutationObserver(records => {
    for (const r of records) for (const n of r.addedNodes) {
      if (n.nodeType === 1 && (n.matches('.jupyter-widgets') || n.querySelector('.jupyter-widgets'))
          && n.closest('.jp-OutputArea')) window.__lrdiffWidgetsSeen += 1;
    }
  });
  obs.observe(panel, {childList: true, subtree: true});
}
"""


def _wait_until_run_finished(page, expected_cells: int, timeout_ms: int) -> None:
    page.wait_for_function(
        """([sel, n]) => {
             const p = document.querySelector(sel); if (!p) return false;
             const prompts = [...p.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent);
             if (prompts.some(t => t.includes('*'))) return false;
             const done = prompts.filter(t => /\\[\\d+\\]/.test(t)).length;
             const failed = p.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
             const ind = p.querySelector('.jp-Notebook-ExecutionIndicator');
             return ind && ind.dataset.status === 'idle' && (done >= n || failed !== null);
           }""",
        arg=[NOTEBOOK, expected_cells], timeout=timeout_ms, polling=500,
    )


def cell(page, index: int):
    """The index-th cell (all cell types, as in the .ipynb) of the active notebook."""
    return page.locator(f"{NOTEBOOK} .jp-Notebook .jp-Cell").nth(index)


def replace_cell_source(page, index: int, text: str) -> None:
    """Type text into a cell's editor, replacing what it held: click into it, select all, insert."""
    c = cell(page, index)
    c.scroll_into_view_if_needed()
    editor = c.locator(".cm-content")
    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(text)
    page.keyboard.press("Escape")  # back to command mode


def cell_editor_text(page, index: int) -> str:
    return "\n".join(cell(page, index).locator(".cm-content .cm-line").all_text_contents())
