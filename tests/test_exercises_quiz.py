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

from lrdiff_helpers import SmallResNet, TwoPartModel, grading, pretrained_small_resnet, tiny_vit

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


def test_questions_cover_every_lesson_with_a_third_hard():
    """Are there at least ten questions, each with options A-D, a key and a graded cell, at least a third of
    them hard, and every lesson asked about?"""
    assert sorted(QUESTIONS) == list(range(1, len(QUESTIONS) + 1)) and len(QUESTIONS) >= 10
    for q in QUESTIONS.values():
        assert sorted(q["options"]) == list(LETTERS)
        assert q["key"] in LETTERS and "check_choice" in q["test"]
    heads = [re.search(r"\((easy|medium|hard): [^,]+, lesson (\d+)\)", q["text"]) for q in QUESTIONS.values()]
    levels = [h.group(1) for h in heads]
    assert {"easy", "medium", "hard"} == set(levels) and 3 * levels.count("hard") >= len(levels), levels
    lessons = {int(h.group(2)) for h in heads}
    assert lessons == {int(p.name[:2]) for p in (ROOT / "notebooks").glob("*.ipynb")}, lessons


@pytest.mark.parametrize("n", sorted(QUESTIONS))
def test_grader_key_accepts_the_key_only_and_explains_it(n):
    """Does the grader's key (autograder/quiz_key.py) accept each question's key, and only its key, and does
    its verdict, right or wrong, carry the explanation of that key?"""
    from autograder import checks, quiz_key

    q = QUESTIONS[n]
    digest = quiz_key.QUIZ_KEY[f"q{n}"]
    assert [c for c in LETTERS if grading.answer_digest(f"q{n}", c) == digest] == [q["key"]]
    assert quiz_key.EXPLANATIONS[f"q{n}"].startswith(f"{q['key']}. ")
    for c in LETTERS:
        verdict = checks.judge(f"q{n}_test", {"grade_id": f"q{n}_test", "cases": [{"value": {"str": c}}]})
        assert verdict.ok == (c == q["key"]), verdict.message
        assert verdict.message.endswith(quiz_key.EXPLANATIONS[f"q{n}"]), verdict.message


def _q1() -> str:
    # A is false: the new head sends gradients into the pretrained backbone; D is false: BatchNorm's running
    # statistics move in train() mode with a backbone lr of 0. (B is no rule; C is what the lessons measure.)
    m = pretrained_small_resnet(seed=0)
    head = list(m.fc.parameters())
    rest = [p for p in m.parameters() if all(p is not h for h in head)]
    opt = torch.optim.SGD([{"params": rest, "lr": 0.0}, {"params": head, "lr": 1e-2}])
    before = m.bn1.running_mean.clone()
    m.train()
    torch.nn.functional.cross_entropy(m(torch.randn(8, 1, 8, 8)), torch.arange(8)).backward()
    opt.step()
    assert m.conv1.weight.grad.abs().sum() > 0
    assert not torch.equal(before, m.bn1.running_mean)
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
    held_after = {}
    for letter, option in QUESTIONS[7]["options"].items():
        model = TwoPartModel()
        ns = _run(QUESTIONS[7]["text"].split("`")[1], model=model)  # the optimizer, built before the line
        exec(_code_of(option), {"model": model, "nn": torch.nn, "torch": torch})
        held = {id(p) for g in ns["opt"].param_groups for p in g["params"]}
        held_after[letter] = all(id(p) in held and p.requires_grad for p in model.part2.parameters())
    out = [c for c, ok in held_after.items() if not ok]
    assert len(out) == 1, held_after
    return out[0]


def _q8() -> str:
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


def _q9() -> str:
    ns = _run(QUESTIONS[9]["code"])
    true = [c for c, option in QUESTIONS[9]["options"].items() if eval(_code_of(option), ns)]
    assert len(true) == 1, true
    return true[0]


def _q10() -> str:
    model = TwoPartModel()
    ns = _run(QUESTIONS[10]["code"], model=model)
    betas = [g["betas"] for g in ns["opt"].param_groups]
    return {(0.5, 0.999): "A", (0.95, 0.999): "B", (0.85, 0.999): "C"}[betas[0]] if betas[0] == betas[1] else "?"


def _q11() -> str:
    backbone, head = [torch.nn.Parameter(torch.ones(3))], [torch.nn.Parameter(torch.ones(3))]
    opt = _run(QUESTIONS[11]["code"], backbone=backbone, head=head)["opt"]
    for p in backbone + head:
        p.grad = torch.zeros(3)  # no gradient part: only the decay moves the weights
    opt.step()
    factor = backbone[0].detach()[0].item()
    assert abs(head[0].detach()[0].item() - (1 - 1e-2 * 0.01)) < 1e-7
    return min({"A": 1 - 1e-5 * 0.01, "B": 0.99, "C": 1 - 1e-3 * 0.01, "D": 1 - 1e-5}.items(),
               key=lambda kv: abs(kv[1] - factor))[0]


def _q12() -> str:
    model = pretrained_small_resnet(seed=0)
    head = list(model.fc.parameters())
    backbone = [p for p in model.parameters() if all(p is not h for h in head)]
    opt = torch.optim.SGD([{"params": backbone, "lr": 0.0}, {"params": head, "lr": 1e-2}], momentum=0.9,
                          weight_decay=5e-4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        opt.zero_grad()
        x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    changed = {k.rsplit(".", 1)[1] for k, v in model.state_dict().items()
               if not k.startswith("fc.") and not torch.equal(v, before[k])}
    assert changed == {"running_mean", "running_var", "num_batches_tracked"}, changed
    return "C"


def _q13() -> str:
    p, q = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    ns = _run(QUESTIONS[13]["code"], p=p, q=q)
    lr = ns["opt"].param_groups[1]["lr"]
    return "A" if abs(lr - 1.0) < 1e-9 else {0.1: "B"}.get(round(lr, 12), "?")


def _q14() -> str:
    ns = _run(QUESTIONS[14]["code"], nn=torch.nn)
    opt, b = ns["opt"], ns["b"]
    lr = next(g["lr"] for g in opt.param_groups if any(p is b.weight for p in g["params"]))
    return {0.1: "D", 0.01: "A"}[lr]


def _q15() -> str:
    ns = _run(QUESTIONS[15]["code"], vit=tiny_vit())
    opt, vit = ns["opt"], ns["vit"]
    block0 = {id(p) for p in vit.blocks[0].parameters()}
    lrs = {g["lr"] for g in opt.param_groups if any(id(p) in block0 for p in g["params"])}
    scales = {g["lr_scale"] for g in opt.param_groups if any(id(p) in block0 for p in g["params"])}
    assert scales == {0.5**4}, scales  # the factor A expects is there, as a key torch never reads
    return {1e-3: "B", 6.25e-5: "A", 5e-4: "C"}[lrs.pop()] if len(lrs) == 1 else "?"


def _q16() -> str:
    from peft import LoraConfig, get_peft_model
    from peft.optimizers import create_loraplus_optimizer

    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)),
                           LoraConfig(r=2, target_modules=["0"]))
    named = dict(model.named_parameters())
    a = next(p for n, p in named.items() if "lora_A" in n)
    b = next(p for n, p in named.items() if "lora_B" in n)
    assert torch.count_nonzero(b) == 0 and torch.count_nonzero(a) > 0  # B starts at zero, A at random
    opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=1e-3, loraplus_lr_ratio=16)
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(b)] == 16 * lr_of[id(a)]
    return "B"


def _q17() -> str:
    vit = tiny_vit()
    ns = _run(QUESTIONS[17]["code"], vit=vit)
    caught = {id(p) for p in ns["no_decay"]}
    exempt_by_timm = {n for n, p in vit.named_parameters() if p.ndim <= 1 or n in vit.no_weight_decay()}
    missed = sorted(n for n, p in vit.named_parameters() if n in exempt_by_timm and id(p) not in caught)
    return {("cls_token", "pos_embed"): "D", (): "A"}.get(tuple(missed), "?")


DERIVE = {n: globals()[f"_q{n}"] for n in range(1, 18) if n != 8}


@pytest.mark.parametrize("n", sorted(DERIVE))
def test_key_is_what_pytorch_does(n):
    """Is the key the letter that executing the question's code gives?"""
    assert DERIVE[n]() == QUESTIONS[n]["key"]


@pytest.mark.slow
def test_fine_tuning_question_states_measured_facts():
    """Does question 8 state what the course's recipe measures (9 fine-tuning runs), and is its key right?"""
    assert _q8() == QUESTIONS[8]["key"]


def test_answers_are_spread_over_the_letters():
    """Is no letter the key of more than a quarter of the questions (rounded up)?"""
    keys = [q["key"] for q in QUESTIONS.values()]
    assert max(keys.count(c) for c in LETTERS) <= -(-len(keys) // 4), keys
