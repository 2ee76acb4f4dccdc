"""Answer cells that try to cheat: the attacks the sandbox must defeat, as code a submission can hold.

The many attacks of the hostile batch are in ``tests/fixtures/submissions/hostile.py``; this module keeps the one
that the tests and the benchmark build into ordinary submissions.
"""

from __future__ import annotations

__all__ = ["steal_source_answer"]

#: An answer cell that copies the instructor's solution of ``grade_id`` from ``source/`` (``../`` up to 7 times
#: from the notebook's folder); with no source in reach it defines ``fallback`` instead. Unconfined, it finds
#: ``source/`` from ``autograded/<student>/lrdiff/``; in the sandbox it finds nothing.
_STEAL_SOURCE = '''import json, pathlib

def _steal(grade_id):
    for up in range(1, 8):
        path = pathlib.Path("../" * up) / "source" / "lrdiff" / "exercises.ipynb"
        if path.is_file():
            for cell in json.loads(path.read_text())["cells"]:
                if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                    return "".join(cell["source"])
    return None

_code = _steal(GRADE_ID)
if _code:
    exec(_code)
FALLBACK'''


def steal_source_answer(grade_id: str, fallback: str = "") -> str:
    """The code of an answer cell that copies the instructor's solution of ``grade_id`` from ``source/``."""
    tail = "else:\n" + "".join(f"    {line}\n" for line in fallback.strip("\n").splitlines()) if fallback else ""
    return _STEAL_SOURCE.replace("GRADE_ID", repr(grade_id)).replace("FALLBACK", tail)
