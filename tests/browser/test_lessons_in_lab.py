"""Do the lessons run in JupyterLab, as a learner runs them, and show what they should?

Each lesson is opened in a real JupyterLab (headless Chromium) on a copy of the course; its committed outputs
are cleared (Edit -> Clear Outputs of All Cells) and Run -> Run All Cells runs it on the "Python (lrdiff)"
kernel. What must show up is read off the committed notebook: as many figures and HTML tables as it has, no
error or stderr output, and progress-bar widgets drawn if it has any (seen while running: the course's bars
are tqdm.auto widgets with leave=False, which JupyterLab removes when they finish).
"""

from __future__ import annotations

import os

import pytest

import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LESSONS = sorted((bs.course_root() / "notebooks").glob("*.ipynb"))
RUN_TIMEOUT_S = float(os.environ.get("LRDIFF_BROWSER_RUN_TIMEOUT", 420))


@pytest.mark.parametrize("lesson", LESSONS, ids=[p.name for p in LESSONS])
def test_lesson_runs_in_jupyterlab(page, lab_server, lesson):
    """Does Run All Cells in JupyterLab run the lesson without error and draw its figures and tables?"""
    rel = lesson.relative_to(bs.course_root()).as_posix()
    expected = bs.expected_from(lab_server.root / rel)
    assert expected.stderr == 0, f"{rel} is committed with {expected.stderr} error/stderr outputs"

    bs.open_notebook(page, lab_server, rel)
    state = bs.notebook_state(page)
    assert state["kernel"].strip() == "Python (lrdiff)", f"kernel shown: {state['kernel']!r}"
    assert bs.open_dialogs(page) == [], f"a dialog opened with the notebook: {bs.open_dialogs(page)}"

    # Start from a notebook without outputs, so that everything checked below was drawn by this run.
    bs.menu_command(page, "Edit", "editmenu:clear-all")
    cleared = bs.notebook_state(page)
    assert cleared["counts"] == [] and cleared["images"] == 0, "outputs still shown after Clear All Outputs"

    state = bs.run_all_and_wait(page, expected.code_cells, timeout_ms=int(RUN_TIMEOUT_S * 1000))
    bs.scroll_to_first(page, '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]',
                       '.jp-OutputArea-output[data-mime-type^="image/"]',
                       '.jp-OutputArea-output[data-mime-type="text/html"] table')
    bs.snapshot(page, f"lesson-{lesson.stem}")

    errors = [f"cell {i}: {text}" for i, text in state["stderr"] if i not in expected.raises]
    assert errors == [], "error or stderr output:\n" + "\n---\n".join(errors)
    assert len(state["counts"]) == expected.code_cells, (
        f"{len(state['counts'])} of {expected.code_cells} code cells ran; prompts: {state['prompts']}"
    )
    assert state["counts"] == sorted(state["counts"]), f"cells ran out of order: {state['counts']}"
    assert state["imagesLoaded"] == state["images"], "a figure's <img> did not load"
    assert state["widgetErrors"] == [], f"widgets failed to render: {state['widgetErrors']}"
    if expected.widgets:
        assert state["widgetsSeen"] > 0, "no progress-bar widget rendered (ipywidgets' lab extension?)"
    assert bs.open_dialogs(page) == [], f"unexpected dialog: {bs.open_dialogs(page)}"
    assert expected.executed, f"{rel} is committed without outputs: lessons are committed executed"

    assert state["images"] == expected.images, (
        f"{state['images']} figures drawn, the committed notebook has {expected.images}"
    )
    assert state["tables"] == expected.tables, (
        f"{state['tables']} HTML tables rendered, the committed notebook has {expected.tables}"
    )
