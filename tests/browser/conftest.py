"""Fixtures for the browser tests: one JupyterLab server on a copy of the course, one headless Chromium.

The tests skip (with the reason) when playwright or Debian's chromium is missing; scripts/install_system_deps.sh
installs chromium. Set LRDIFF_BROWSER_SCREENSHOTS=1 to keep a screenshot of every test, not only of failures.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

import browser_support as bs
from tests.support import skip_or_fail


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives JupyterLab in headless Chromium")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the item, so that fixtures can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def _failed(node) -> bool:
    return any(getattr(getattr(node, f"rep_{w}", None), "failed", False) for w in ("setup", "call"))


def _skip_or_fail(reason: str) -> None:
    """Skip on a student's machine; in CI (env CI set) a missing browser is a failure, not a skip."""
    skip_or_fail(reason, f"{reason} (CI is set: the browser tests must run)")


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not bs.CHROMIUM.exists():
        _skip_or_fail(f"{bs.CHROMIUM} not found: run scripts/install_system_deps.sh (Debian's chromium)")
    return bs.CHROMIUM


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> Path:
    """A temporary copy of the course, registered in its own gradebook: what the server serves."""
    src = bs.course_root()
    dst = tmp_path_factory.mktemp("lrdiff-lab") / "course"
    bs.copy_course(src, dst)
    if (dst / "nbgrader_config.py").exists() and (dst / "source" / "lrdiff").is_dir():
        # A fresh clone has no gradebook; the formgrader lists only assignments registered in one.
        subprocess.run(
            [str(bs.VENV_BIN / "nbgrader"), "db", "assignment", "add", "lrdiff"],
            cwd=dst, env=bs.server_env(dst.parent / "home"), check=True, capture_output=True, timeout=180,
        )
    return dst


# Module scope: playwright's sync API keeps an event loop running in the main thread while it is open,
# and tests after the browser tests call asyncio.run() (nbclient); so both close at the end of each browser test module.
@pytest.fixture(scope="module")
def lab_server(course_copy, chromium_path):
    server = bs.start_lab(course_copy, course_copy.parent / "home")
    yield server
    bs.stop_lab(server)


@pytest.fixture(scope="module")
def chromium(chromium_path):
    try:
        from playwright import sync_api
    except ImportError:
        _skip_or_fail("the browser tests need playwright")
    pw = sync_api.sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=str(chromium_path), args=bs.CHROMIUM_ARGS, headless=True,
        )
    except Exception as exc:  # noqa: BLE001 - any launch failure means: no browser on this machine
        pw.stop()
        _skip_or_fail(f"cannot start {chromium_path}: {exc}")
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture()
def page(request, chromium, lab_server):
    """A fresh browser context (no cookies, no storage) and page; a screenshot if the test fails."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, service_workers="block")
    context.set_default_timeout(30_000)
    pg = context.new_page()
    messages: list[str] = []
    pg.on("pageerror", lambda exc: messages.append(f"page error: {exc}"))
    # Chromium resolves nothing but 127.0.0.1; a request elsewhere (it fails) is worth knowing about.
    pg.on("request", lambda req: None if req.url.startswith(("http://127.0.0.1", "data:", "blob:", "about:"))
          else messages.append(f"request off localhost: {req.url}"))
    yield pg
    failed = _failed(request.node)
    if failed or os.environ.get("LRDIFF_BROWSER_SCREENSHOTS"):
        bs.ARTIFACTS.mkdir(exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid.split("::", 1)[-1])
        try:
            pg.screenshot(path=str(bs.ARTIFACTS / f"{name}.png"))
        except Exception as exc:  # noqa: BLE001 - a screenshot must never hide the real failure
            messages.append(f"screenshot failed: {exc}")
        if failed:
            (bs.ARTIFACTS / f"{name}.log").write_text(
                "\n".join(messages) + "\n--- jupyter server log (tail) ---\n" + lab_server.log_tail(200)
            )
    context.close()
    try:
        lab_server.shutdown_kernels()
    except OSError as exc:  # a server that died has no kernels left to stop; the next test will say why
        print(f"could not shut kernels down: {exc}")
