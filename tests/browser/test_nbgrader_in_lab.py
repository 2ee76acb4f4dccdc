"""Does nbgrader work in JupyterLab for this course: Validate for a student, the formgrader for an instructor?

Validate runs the whole saved notebook and fails while any answer cell still raises NotImplementedError, so
both tests fill every answer cell of release/lrdiff/exercises.ipynb with the instructor's solution (read from
source/lrdiff/exercises.ipynb) by typing into JupyterLab's editor. They differ in `two_group_sgd`'s cell: the
solution (Validate must pass) or a plausible mistake, every parameter in one group at one lr (Validate must
fail, on the tests of `two_group_sgd`).
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

import browser_support as bs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

RELEASE = "release/lrdiff/exercises.ipynb"
SOURCE = "source/lrdiff/exercises.ipynb"
TARGET = "two_group_sgd"

WRONG_ANSWER = '''\
import torch


def two_group_sgd(model, part1_lr, part2_lr, momentum=0.9):
    """A plausible mistake: one param group, every parameter at part1_lr."""
    return torch.optim.SGD(model.parameters(), lr=part1_lr, momentum=momentum)
'''

_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def _source(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _nbgrader(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def answer_cells(nb: dict) -> dict[str, int]:
    """grade_id -> index of each autograded answer (code) cell."""
    return {
        _nbgrader(c)["grade_id"]: i for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and _nbgrader(c).get("solution")
    }


def solutions(source_nb: dict) -> dict[str, str]:
    """grade_id -> the instructor's answer: the source cell without its solution markers."""
    return {
        _nbgrader(c)["grade_id"]: "\n".join(
            line for line in _source(c).splitlines() if not _MARKER.match(line)
        )
        for c in source_nb["cells"]
        if c["cell_type"] == "code" and _nbgrader(c).get("solution")
    }


@pytest.fixture()
def exercises(lab_server):
    """The release notebook, fresh from the repository (an earlier test may have saved answers into it)."""
    course = bs.course_root()
    assert (course / RELEASE).exists(), f"{RELEASE} is missing: regenerate it (./course grade release) and commit it"
    shutil.copy2(course / RELEASE, lab_server.root / RELEASE)
    release = json.loads((course / RELEASE).read_text())
    source = json.loads((course / SOURCE).read_text())
    cells = answer_cells(release)
    targets = [gid for gid, i in cells.items() if f"def {TARGET}(" in _source(release["cells"][i])]
    assert targets, f"no answer cell in {RELEASE} defines {TARGET}()"
    sols = solutions(source)
    missing = sorted(set(cells) - set(sols))
    assert not missing, f"answer cells of {RELEASE} with no solution in {SOURCE}: {missing}"
    return {"cells": cells, "target": targets[0], "solutions": sols, "notebook": release}


def fill_answers(page, exercises, target_answer: str) -> dict[int, str]:
    """Type an answer into every answer cell; return what each cell (by index) should now hold."""
    typed = {}
    for gid, index in exercises["cells"].items():
        text = target_answer if gid == exercises["target"] else exercises["solutions"][gid]
        bs.replace_cell_source(page, index, text)
        typed[index] = text
    for index, text in typed.items():
        shown = bs.cell_editor_text(page, index)
        assert shown.rstrip() == text.rstrip(), f"cell {index} holds, after typing:\n{shown}\nexpected:\n{text}"
    return typed


def validate(page) -> tuple[str, str]:
    """Press nbgrader's Validate button; return the dialog's kind ("success"/"error") and its text."""
    page.locator(f"{bs.NOTEBOOK} jp-button.validate-button").click()
    dialog = page.locator(".nbgrader-SuccessDialog, .nbgrader-ErrorDialog")
    dialog.wait_for(state="visible", timeout=300_000)  # Validate re-runs the notebook in a new kernel
    kind = "success" if page.locator(".nbgrader-SuccessDialog").count() else "error"
    text = dialog.inner_text()
    bs.snapshot(page, f"validate-{kind}")
    return kind, text


def close_dialog(page) -> None:
    page.locator(".jp-Dialog button.jp-Dialog-button").last.click()
    page.locator(".jp-Dialog").wait_for(state="detached")


def saved_sources(lab_server) -> list[str]:
    return [_source(c) for c in json.loads((lab_server.root / RELEASE).read_text())["cells"]]


def test_validate_accepts_correct_answers(page, lab_server, exercises):
    """With correct answers typed in, does Run All run clean and does Validate say it passes?"""
    bs.open_notebook(page, lab_server, RELEASE)
    assert bs.notebook_state(page)["kernel"].strip() == "Python (lrdiff)"
    typed = fill_answers(page, exercises, exercises["solutions"][exercises["target"]])

    expected = bs.expected_from(lab_server.root / RELEASE)
    state = bs.run_all_and_wait(page, expected.code_cells, timeout_ms=300_000)
    assert state["stderr"] == [], "errors with the correct answers:\n" + "\n---\n".join(
        f"cell {i}: {text}" for i, text in state["stderr"])
    assert len(state["counts"]) == expected.code_cells, f"not every cell ran: {state['prompts']}"

    kind, text = validate(page)
    assert kind == "success" and "Success! Your notebook passes all the tests." in text, text
    close_dialog(page)
    # Validate saved the notebook first: what it validated is what was typed.
    saved = saved_sources(lab_server)
    for index, answer in typed.items():
        assert saved[index].rstrip() == answer.rstrip()


def test_validate_rejects_wrong_answer(page, lab_server, exercises):
    """With every parameter in one group at one lr, do the tests fail and does Validate say so?"""
    bs.open_notebook(page, lab_server, RELEASE)
    fill_answers(page, exercises, WRONG_ANSWER)

    expected = bs.expected_from(lab_server.root / RELEASE)
    state = bs.run_all_and_wait(page, expected.code_cells, timeout_ms=300_000)
    assert state["stderr"], "the wrong answer ran without any failing test in the notebook"

    kind, text = validate(page)
    assert kind == "error", f"Validate accepted a wrong two_group_sgd:\n{text}"
    assert page.locator(".nbgrader-ErrorDialog .validation-failed").count() == 1, text
    assert TARGET in text, f"the failures do not mention {TARGET}:\n{text}"
    close_dialog(page)


def test_formgrader_lists_the_assignment(page, lab_server):
    """Does an instructor see the assignment "lrdiff" in the formgrader (Nbgrader -> Formgrader)?"""
    if not (lab_server.root / "nbgrader_config.py").exists():
        pytest.fail("no nbgrader_config.py at the course root: the formgrader cannot find the course")
    page.goto(bs.lab_url(lab_server))
    page.locator("#jp-MainMenu").wait_for(state="visible", timeout=120_000)
    bs.menu_command(page, "Nbgrader", "nbgrader:open-formgrader")
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab .lm-TabBar-tabLabel", has_text="Formgrader")
    tab.wait_for(state="visible", timeout=60_000)

    frame = page.frame_locator("#jp-main-dock-panel iframe[src*='formgrader']")
    link = frame.locator("td.name a", has_text=re.compile(r"^\s*lrdiff\s*$"))
    link.wait_for(state="visible", timeout=60_000)
    rows = frame.locator("#main_table tbody tr, table tbody tr").all_inner_texts()
    assert any("lrdiff" in r for r in rows), rows
    body = frame.locator("body").inner_text()
    assert "not a subdirectory" not in body and "misconfigur" not in body.lower(), body[:2000]
