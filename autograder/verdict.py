"""The verdict on one graded test cell: the probe the kernel runs, and the judgement of what it displayed.

:func:`probe_source` is the code that replaces a graded test cell at grading time: it runs the cell's cases
(``autograder/cases.py``), visible and hidden, in the student's kernel and displays plain-data evidence
(``lrdiff_helpers.evidence``), never an expected value. :func:`judge` reads that evidence back strictly (one
record, for this cell, one entry per case) and applies the cell's checks (``autograder/comparisons.py``) in the
grader's own process. ``autograder/judge.py`` wires both into nbgrader.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .cases import CHECKS, Check

__all__ = ["Verdict", "judge", "probe_source"]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str


def probe_source(grade_id: str) -> str:
    """The code that replaces test cell ``grade_id`` when a submission is graded."""
    cases = json.dumps([c.for_kernel() for c in CHECKS[grade_id].cases])
    return (
        "# Graded outside this kernel: this cell only records what the answers return.\n"
        "import json as _lrdiff_json\n"
        "from lrdiff_helpers import evidence as _lrdiff_evidence\n"
        f"_lrdiff_evidence.probe({grade_id!r}, _lrdiff_json.loads({cases!r}), globals())\n"
    )


def _evidence_of(grade_id: str, outputs: Sequence[Any]) -> dict:
    """The one evidence payload of this cell (the probe displays exactly one)."""
    from lrdiff_helpers.evidence import MAX_EVIDENCE, MIME, EvidenceError

    found = []
    for out in outputs:
        data = out.get("data", {}) if isinstance(out, Mapping) else {}
        if MIME in data:
            found.append(data[MIME])
    if not found:
        errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs
                  if isinstance(o, Mapping) and o.get("output_type") == "error"]
        why = f" ({errors[-1][:300]})" if errors else ""
        raise EvidenceError(f"this test did not run to the end{why}, so nothing could be checked")
    if len(found) > 1:
        raise EvidenceError("this test produced more than one result; something in the notebook interfered with it")
    text = found[0]
    if isinstance(text, list):
        text = "".join(text)
    if not isinstance(text, str) or len(text) > MAX_EVIDENCE:
        raise EvidenceError("the result of this test is malformed")
    try:
        payload = json.loads(text)
    except ValueError:
        raise EvidenceError("the result of this test is malformed") from None
    if not isinstance(payload, dict) or payload.get("grade_id") != grade_id:
        raise EvidenceError("the result of this test is not this test's")
    if not isinstance(payload.get("cases"), list) or len(payload["cases"]) != len(CHECKS[grade_id].cases):
        raise EvidenceError("the result of this test does not have one entry per case")
    if not all(isinstance(e, dict) for e in payload["cases"]):
        raise EvidenceError("the result of this test is malformed")
    return payload


def judge(grade_id: str, outputs: Sequence[Any] | dict, sources: Iterable[str] = ()) -> Verdict:
    """Judge one graded test cell from its outputs in the executed notebook (or an evidence payload).

    ``sources``: the code cells of the submitted notebook (for the "did not use the builders" check).
    """
    check = CHECKS[grade_id]
    try:
        payload = outputs if isinstance(outputs, dict) else _evidence_of(grade_id, outputs)
        pairs = list(zip(check.cases, payload["cases"]))
        if check.combined is not None:
            check.combined(pairs)
        else:
            for i, (case, ev) in enumerate(pairs):
                try:
                    if "error" in ev:
                        raise AssertionError(f"{case.fn or case.name} raised {ev['error']}")
                    check.check(case, ev)
                except AssertionError as err:
                    raise AssertionError(f"[{case.label(i)}] {err}") from None
        for fn in check.no_builders:
            from lrdiff_helpers import grading

            used = grading.builders_used(sources, fn)
            if used:
                raise AssertionError(f"{fn} uses lrdiff_helpers' {', '.join(used)}; the exercise is to build the "
                                     "groups yourself")
    except AssertionError as err:
        return Verdict(False, _explained(str(err) or "failed", check))
    except Exception as err:  # noqa: BLE001 (a check that breaks on odd evidence must not stop the batch)
        return Verdict(False, f"the grader could not check this answer: {type(err).__name__}: {err}"[:1000])
    n = len(check.cases)
    return Verdict(True, _explained(f"passed: {n} case{'s' if n != 1 else ''} checked by the grader", check))


def _explained(message: str, check: Check) -> str:
    return f"{message}. Answer: {check.explain}" if check.explain else message
