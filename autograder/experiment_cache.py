"""The grader's training runs of the experiment, once per class: what the recipe gives at a pair of lrs, cached.

The experiment's graded cells are judged by training the course's recipe at the student's two lrs in the
grader's own process (``lrdiff_helpers.grading.experiment_results`` and ``experiment_test_accuracy``: three
seeds, about 3 s of CPU). Under one course fingerprint (the code, the lock file, :mod:`autograder.fingerprint`)
and the pinned arithmetic that is deterministic, and a class hands in the same few pairs again and again. So:

* the coordinator keeps what was trained in ``autograder/experiment_cache.json`` (beside the default gradebook;
  git-ignored; entries of another fingerprint are dropped) and sends what it knows with every task (:func:`load`,
  :func:`save`);
* a grading process reads and extends its task's copy (:func:`use`, then :func:`trained`); the task returns it,
  and the coordinator keeps the new entries. A run on a machine without the pins is never stored.

Without :func:`use` (``nbgrader autograde`` run by hand) nothing is read or written: each process trains each
pair once (``lrdiff_helpers.grading``'s own in-memory cache).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .files import write_atomic

#: The coordinator's cache, under the course's ``autograder/`` folder.
CACHE_FILE = "experiment_cache.json"

_path: Path | None = None


@dataclass(frozen=True)
class Trained:
    """What the checks compare: the mean validation and test accuracies (percent), and the result as printed."""

    val_acc: float
    test_acc: float
    text: str


def use(path: Path | None) -> None:
    """Read and extend the runs in ``path`` (a JSON object: key -> :class:`Trained`) in this process."""
    global _path
    _path = None if path is None else Path(path)


def _read(path: Path | None) -> dict:
    try:
        return runs_from(path.read_bytes()) if path is not None else {}
    except FileNotFoundError:
        return {}


def runs_from(data: bytes | str | None) -> dict:
    """Training runs from their JSON (what a task carries each way); ``{}`` for anything else.

    >>> runs_from(b'{"1e-04 0.01 0": {"val_acc": 70.0}}'), runs_from(b"[1]"), runs_from(b"not json")
    ({'1e-04 0.01 0': {'val_acc': 70.0}}, {}, {})
    """
    try:
        runs = json.loads(data or b"{}")
    except ValueError:
        return {}
    return runs if isinstance(runs, dict) else {}


def key(backbone_lr: float, head_lr: float, seeds: tuple[int, ...]) -> str:
    """The cache key of one pair of lrs and seeds (floats by ``repr``: exact).

    >>> key(1e-4, 0.01, (0, 1))
    '0.0001 0.01 0,1'
    """
    return f"{float(backbone_lr)!r} {float(head_lr)!r} {','.join(map(str, seeds))}"


def trained(backbone_lr: float, head_lr: float) -> Trained:
    """The recipe's result at these lrs: from the cache in use, else trained here (and added to it)."""
    from lrdiff_helpers import grading

    k = key(backbone_lr, head_lr, grading.EXPERIMENT_SEEDS)
    runs = _read(_path)
    if isinstance(runs.get(k), dict):
        try:
            return Trained(**runs[k])
        except TypeError:
            pass  # an entry of another shape: train again
    result = grading.experiment_results(backbone_lr, head_lr)
    run = Trained(result.val_acc, grading.experiment_test_accuracy(backbone_lr, head_lr), str(result))
    if _path is not None and not result.unpinned:
        write_atomic(_path, json.dumps({**runs, k: asdict(run)}))
    return run


def load(config_dir: Path, fingerprint: str) -> dict:
    """The coordinator's runs for this course fingerprint (none when the file is missing or of another)."""
    stored = _read(Path(config_dir) / CACHE_FILE)
    runs = stored.get("runs")
    return dict(runs) if stored.get("fingerprint") == fingerprint and isinstance(runs, dict) else {}


def save(config_dir: Path, fingerprint: str, runs: dict) -> None:
    """Write the coordinator's runs for this fingerprint (atomically; the file's other entries go)."""
    write_atomic(Path(config_dir) / CACHE_FILE, json.dumps({"fingerprint": fingerprint, "runs": runs}, indent=1,
                                                             sort_keys=True) + "\n")
