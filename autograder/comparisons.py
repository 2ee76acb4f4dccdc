"""The checks of the graded cases: each compares one case's evidence with the values the grader expects.

A check gets a :class:`~autograder.cases.Case` and the plain-data evidence the probe recorded for it
(``lrdiff_helpers.evidence``), rebuilds the case's model in the grader's own process, and raises
``AssertionError`` (saying what was expected and what was found) when the answer is wrong. The combined checks
of the experiment get every case of their cell at once. ``autograder/cases.py`` says which check each graded
test cell uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .experiment_cache import trained
from .quiz_key import QUIZ_KEY

if TYPE_CHECKING:
    from .cases import Case

__all__ = [
    "dict_structure", "experiment_test_acc", "experiment_val_acc", "experiment_values", "finetune_lrs",
    "layerwise_lrs", "optimizer_lrs", "optimizer_options", "optimizer_structure", "quiz_answer", "schedule_bound",
    "schedule_lrs", "schedule_peaks", "vit_llrd", "weight_decays",
]


# ------------------------------------------------------------------------------------------------------------
# Building blocks (the grader's own lrdiff_helpers and torch)


def _g():
    from lrdiff_helpers import grading

    return grading


def _ev():
    from lrdiff_helpers import evidence

    return evidence


def _model(case: Case):
    return _ev().build_model(case.model)


def _map(case: Case, ev: dict):
    """The case's group map from its evidence, and the model the grader built for the case (once)."""
    model = _model(case)
    return _ev().groupmap_from_json(ev.get("map"), model), model


def _opt(name: str):
    import torch

    return getattr(torch.optim, name)


def optimizer_structure(case: Case, ev: dict) -> None:
    g = _g()
    gm, model = _map(case, ev)
    g.check_optimizer(_ev().optimizer_facts_from_json(ev.get("facts")), _opt(case.expect.get("cls", "SGD")))
    g.check_exactly_one_group(model, gm)
    g.check_no_empty_groups(model, gm)


def optimizer_lrs(case: Case, ev: dict) -> None:
    gm, model = _map(case, ev)
    g = _g()
    g.assert_lrs(model, gm, g.expected_lrs_by_module(model, case.expect["lrs"]))


def optimizer_options(case: Case, ev: dict) -> None:
    _g().check_optimizer(_ev().optimizer_facts_from_json(ev.get("facts")), _opt("SGD"), **case.expect["options"])


def dict_structure(case: Case, ev: dict) -> None:
    g = _g()
    g.check_group_dicts(_ev().shape_from_json(ev.get("shape")), n=case.expect.get("n"), what=case.fn)
    gm, model = _map(case, ev)
    g.check_exactly_one_group(model, gm)
    g.check_no_empty_groups(model, gm)
    if case.expect.get("stages"):
        g.check_stage_groups(model, gm)


def finetune_lrs(case: Case, ev: dict) -> None:
    g = _g()
    gm, model = _map(case, ev)
    g.assert_lrs(model, gm, g.expected_finetune_lrs(model, **case.expect["lrs"]))


def layerwise_lrs(case: Case, ev: dict) -> None:
    g = _g()
    gm, model = _map(case, ev)
    g.assert_lrs(model, gm, g.expected_layerwise_lrs(model, **case.expect["lrs"]))


def weight_decays(case: Case, ev: dict) -> None:
    g = _g()
    gm, model = _map(case, ev)
    if case.expect.get("one_group"):
        g.check_exactly_one_group(model, gm)
    g.assert_weight_decays(model, gm, g.expected_weight_decays(model, case.expect["weight_decay"]))
    if "lrs" in case.expect:
        g.assert_lrs(model, gm, g.expected_finetune_lrs(model, **case.expect["lrs"]))


def vit_llrd(case: Case, ev: dict) -> None:
    g = _g()
    gm, model = _map(case, ev)
    if "lrs" in case.expect:
        g.assert_lrs(model, gm, g.expected_vit_llrd_lrs(model, **case.expect["lrs"]))
    if "weight_decay" in case.expect:
        g.assert_weight_decays(model, gm, g.expected_vit_weight_decays(model, case.expect["weight_decay"]))


def schedule_bound(case: Case, ev: dict) -> None:
    _g().check_one_cycle_bound(_ev().schedule_facts_from_json(ev.get("facts")))


def _schedule_lrs(ev: dict) -> tuple:
    facts = _ev().schedule_facts_from_json(ev.get("facts"))
    _g().check_one_cycle_bound(facts)  # a schedule that is not a bound OneCycleLR has no lrs to compare
    return facts.lrs


def schedule_peaks(case: Case, ev: dict) -> None:
    _g().check_one_cycle_peaks(_schedule_lrs(ev), case.expect["peaks"])


def schedule_lrs(case: Case, ev: dict) -> None:
    _g().check_one_cycle_lrs(_schedule_lrs(ev), case.expect["peaks"], case.steps)


def quiz_answer(case: Case, ev: dict) -> None:
    g = _g()
    answer = _ev().value_from_json(ev.get("value"))
    g.check_choice(case.name, answer, "ABCD")
    if g.answer_digest(case.name, answer) != QUIZ_KEY[case.name]:
        raise AssertionError(f"{case.name} is not the right answer")


def _experiment_values(pairs: list[tuple[Case, dict]]) -> tuple[Any, Any]:
    values = {}
    for case, ev in pairs:
        if "error" in ev:
            raise AssertionError(ev["error"])
        values[case.name] = _ev().value_from_json(ev.get("value"))
    b, h = values["BACKBONE_LR"], values["HEAD_LR"]
    _g().check_experiment_values(b, h)
    return b, h


def experiment_values(pairs: list[tuple[Case, dict]]) -> None:
    _experiment_values(pairs)


def experiment_val_acc(pairs: list[tuple[Case, dict]]) -> None:
    g = _g()
    run = trained(*_experiment_values(pairs))
    if not run.val_acc >= g.EXPERIMENT_MIN_VAL_ACC:
        raise AssertionError(f"expected a validation accuracy of at least {g.EXPERIMENT_MIN_VAL_ACC:g}%; "
                             f"found {run.text}")


def experiment_test_acc(pairs: list[tuple[Case, dict]]) -> None:
    g = _g()
    lrs = _experiment_values(pairs)
    test_acc = trained(*lrs).test_acc
    if not test_acc >= g.EXPERIMENT_MIN_TEST_ACC:
        raise AssertionError(f"expected a held-out test accuracy of at least {g.EXPERIMENT_MIN_TEST_ACC:g}%; found "
                             f"{test_acc:.1f}% (mean of {len(g.EXPERIMENT_SEEDS)} seeds) with backbone lr "
                             f"{lrs[0]:g}, head lr {lrs[1]:g}")
