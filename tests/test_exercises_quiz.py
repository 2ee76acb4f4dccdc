"""Is every answer of the quiz right? Each question's code is executed and the right letter derived from
what PyTorch really does; it must be the key of the source notebook (and its digest in the grader's key,
``autograder/checks.py``)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch
import torchvision

from lrdiff_helpers import SmallResNet, TwoPartModel, grading

ROOT = Path(__file__).resolve().parents[1]
QUIZ = ROOT / "source" / "lrdiff" / "quiz.ipynb"
LETTERS = "ABCD"


def _questions() -> dict[int, dict]:
    nb = nbformat.read(str(QUIZ), as_version=4)
    out: dict[int, dict] = {}
    current = None
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        m = re.search(r"^### Question (\d+)", cell.source, re.MULTILINE)
        if cell.cell_type == "markdown" and m:
            current = int(m.group(1))
            blocks = re.findall(r"```python\n(.*?)```", cell.source, re.DOTALL)
            options = dict(re.findall(r"^- \*\*([A-D])\*\*: (.*)$", cell.source, re.MULTILINE))
            out[current] = {"code": blocks[0] if blocks else "", "options": options, "text": cell.source}
        elif meta.get("solution") and current is not None:
            out[current]["key"] = re.search(r'q\d+ = "([A-D])"', cell.source).group(1)
        elif meta.get("grade") and current is not None:
            out[current]["test"] = cell.source
    return out


QUESTIONS = _questions()


def _code_of(option: str) -> str:
    return re.fullmatch(r"`(.*)`", option.strip()).group(1)


def _run(code: str, **names) -> dict:
    ns = {"torch": torch, "torchvision": torchvision, **names}
    exec(code, ns)
    return ns


def test_ten_questions_with_four_options_each():
    """Are there ten questions, each with options A-D, a key, and a graded cell?"""
    assert sorted(QUESTIONS) == list(range(1, 11))
    for q in QUESTIONS.values():
        assert sorted(q["options"]) == list(LETTERS)
        assert q["key"] in LETTERS and "check_choice" in q["test"]
    levels = [re.search(r"\((easy|medium|hard):", q["text"]).group(1) for q in QUESTIONS.values()]
    assert {"easy", "medium", "hard"} == set(levels)


@pytest.mark.parametrize("n", range(1, 11))
def test_grader_key_accepts_the_key_only(n):
    """Does the grader's key (autograder/checks.py) accept each question's key, and only its key?"""
    from autograder import checks

    q = QUESTIONS[n]
    digest = checks.QUIZ_KEY[f"q{n}"]
    assert [c for c in LETTERS if grading.answer_digest(f"q{n}", c) == digest] == [q["key"]]
    for c in LETTERS:
        verdict = checks.judge(f"q{n}_test", {"grade_id": f"q{n}_test", "cases": [{"value": {"str": c}}]})
        assert verdict.ok == (c == q["key"]), verdict.message


def _q1() -> str:
    # A is false: torch takes any order of lrs; D is false: each group keeps the lr it is given.
    m = SmallResNet()
    head = list(m.fc.parameters())
    rest = [p for p in m.parameters() if all(p is not h for h in head)]
    opt = torch.optim.SGD([{"params": rest, "lr": 1e-1}, {"params": head, "lr": 1e-4}])
    assert [g["lr"] for g in opt.param_groups] == [1e-1, 1e-4]
    return "C"


def _q2() -> str:
    right = []
    for letter, option in QUESTIONS[2]["options"].items():
        model = TwoPartModel()
        try:
            opt = eval(_code_of(option), {"torch": torch, "model": model})
        except (TypeError, ValueError):
            continue
        lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
        if all(lrs.get(id(p)) == 1e-3 for p in model.part1.parameters()) and all(
            lrs.get(id(p)) == 1e-2 for p in model.part2.parameters()
        ):
            right.append(letter)
    assert len(right) == 1, right
    return right[0]


def _q3() -> str:
    model = TwoPartModel()
    opt = _run(QUESTIONS[3]["code"], model=model)["opt"]
    lr = opt.param_groups[0]["lr"]
    return {1e-2: "A", 1e-3: "B", 0: "D"}[lr]


def _q4() -> str:
    model = TwoPartModel()
    opt = _run(QUESTIONS[4]["code"], model=model)["opt"]  # no error
    sizes = [len(g["params"]) for g in opt.param_groups]
    assert sizes == [2, 0]  # the weights; the biases' group is empty
    return "D"


def _q5() -> str:
    model = TwoPartModel()
    opt = _run(QUESTIONS[5]["code"], model=model)["opt"]
    group = opt.param_groups[1]
    assert group["learning_rate"] == 1e-2  # kept, never read
    return {1e-4: "A", 1e-2: "B"}[group["lr"]]


def _q6() -> str:
    with pytest.raises(ValueError, match="more than one parameter group"):
        _run(QUESTIONS[6]["code"], model=SmallResNet())
    return "C"


def _q7() -> str:
    one = grading.experiment_results(1e-3, 1e-3)
    diff = grading.experiment_results(1e-4, 3e-3)
    # the facts the question states, measured now
    assert abs(one.val_acc - 59) < 1 and all(abs(g + v - 100) < 0.01 for g, v in zip(one.gaps, one.val_accs)), one
    assert abs(diff.val_acc - 67) < 1, diff
    # C is false: the head at 0.001 with the backbone 30 times slower does better than one lr of 0.001
    assert grading.experiment_results(1e-3 / 30, 1e-3).val_acc > one.val_acc + 2
    # B is false: Adam keeps each group's lr; D is false: BatchNorm still updates its running statistics
    model = SmallResNet()
    opt = torch.optim.Adam([{"params": model.layer1.parameters(), "lr": 1e-4}], lr=1e-3)
    assert opt.param_groups[0]["lr"] == 1e-4
    before = model.bn1.running_mean.clone()
    model.train()
    model(torch.randn(8, 1, 8, 8))
    assert not torch.equal(before, model.bn1.running_mean)
    return "A"


def _q8() -> str:
    ns = _run(QUESTIONS[8]["code"])
    true = [c for c, option in QUESTIONS[8]["options"].items() if eval(_code_of(option), ns)]
    assert len(true) == 1, true
    return true[0]


def _q9() -> str:
    model = TwoPartModel()
    ns = _run(QUESTIONS[9]["code"], model=model)
    opt, sched = ns["opt"], ns["sched"]
    peak = max(step[0] for step in grading.one_cycle_lrs(sched, opt, 100))
    return {1e-3: "A", 1e-2: "B", 1e-4: "C"}[round(peak, 12)]


def _q10() -> str:
    model = torchvision.models.resnet18()
    ns = _run(QUESTIONS[10]["code"], model=model)
    caught = {id(p) for p in ns["no_decay"]}
    names = {id(p): n for n, p in model.named_parameters()}
    missed = sorted(
        names[id(p)]
        for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
        for p in m.parameters() if id(p) not in caught
    )
    assert missed and all(re.fullmatch(r"layer\d\.0\.downsample\.1\.weight", n) for n in missed), missed
    assert all(id(p) in caught for n, p in model.named_parameters() if n.endswith("bias"))
    return "D"


DERIVE = {1: _q1, 2: _q2, 3: _q3, 4: _q4, 5: _q5, 6: _q6, 8: _q8, 9: _q9, 10: _q10}


@pytest.mark.parametrize("n", sorted(DERIVE))
def test_key_is_what_pytorch_does(n):
    """Is the key the letter that executing the question's code gives?"""
    assert DERIVE[n]() == QUESTIONS[n]["key"]


@pytest.mark.slow
def test_fine_tuning_question_states_measured_facts():
    """Does question 7 state what the course's recipe measures (6 fine-tuning runs), and is its key right?"""
    assert _q7() == QUESTIONS[7]["key"]


def test_answers_are_spread_over_the_letters():
    """Is no letter the key of more than three questions?"""
    keys = [q["key"] for q in QUESTIONS.values()]
    assert max(keys.count(c) for c in LETTERS) <= 3, keys
