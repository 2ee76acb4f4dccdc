"""The lessons as committed: all there, fully executed in order, in the course's kernel, with no errors.

nbval (run on notebooks/ by the same command) re-executes them and compares outputs; these checks catch what
nbval would not: a lesson committed without outputs, run out of order, or showing an error or a warning.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
TEXT_ONLY = {"02_syntax"}  # syntax: tables and printed values, no picture needed
LESSONS = ["01_concept", "02_syntax", "03_sample_model", "04_experiment", "05_schedules_and_decay",
           "06_freezing_and_checkpoints", "07_transformers", "08_lora_muon_mup"]


def test_every_lesson_is_there():
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == LESSONS


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_is_committed_executed(name):
    """Was the lesson run top to bottom in the lrdiff kernel, with no errors and nothing on stderr?"""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    assert nb.metadata.kernelspec.name == "lrdiff"
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{name}: {counts.count(None)} code cells were never run"
    assert counts == list(range(1, len(code) + 1)), f"{name}: cells not run once, in order: {counts}"
    for i, c in enumerate(code, 1):
        for out in c.outputs:
            assert out.output_type != "error", f"{name} cell [{i}] shows an error: {out.get('ename')}"
            assert not (out.output_type == "stream" and out.name == "stderr"), f"{name} cell [{i}] writes to stderr: {out.text[:200]}"


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_follows_the_skeleton(name):
    """Does each lesson say what you will learn, and end with a Summary and Check yourself questions?"""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for heading in ("What you will learn", "Prerequisites", "Summary", "Check yourself"):
        assert heading in text, f"{name} has no '{heading}'"
    assert text.count("<details>") >= 4, f"{name} needs check-yourself answers a student can reveal"
    if name not in TEXT_ONLY:
        plots = sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert plots > 0, f"{name} shows no plot"
