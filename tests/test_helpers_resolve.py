"""The group-resolution engine (lrdiff_helpers.resolve): the one walk the inspector and the grading checks share."""

from __future__ import annotations

import torch
from torch import nn

from lrdiff_helpers import grading
from lrdiff_helpers.inspector import SCHEDULER_KEYS, inspect_param_groups
from lrdiff_helpers.resolve import LABEL_KEYS, Finding, resolve


def net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))


def test_each_parameter_lands_in_its_group_by_identity():
    """Is every parameter placed in the group that holds that very tensor, with the group's own lr?"""
    m = net()
    r = resolve(m, [{"params": list(m[0].parameters()), "lr": 0.1}, {"params": list(m[2].parameters()), "lr": 0.2}])
    for name, p in m.named_parameters():
        group = r.slots[name].groups
        assert len(group) == 1 and any(q is p for q in r.groups[group[0]]["params"])
    assert [r.setting(n, "lr") for n, _ in m.named_parameters()] == [0.1, 0.1, 0.2, 0.2]
    assert not r.findings and not r.unassigned() and not r.duplicates() and not r.empty_groups()


def test_a_group_without_lr_inherits_the_default():
    """Does a group without 'lr' take the optimizer's base lr, and the other defaults as torch fills them?"""
    m = net()
    r = resolve(m, [{"params": m.parameters()}], torch.optim.Adam, {"lr": 0.5})
    assert r.setting("0.weight", "lr") == 0.5 and r.setting("2.bias", "betas") == (0.9, 0.999)
    r = resolve(m, [{"params": m.parameters(), "momentum": 0.9}], torch.optim.SGD)
    assert r.setting("0.weight", "momentum") == 0.9 and r.setting("0.weight", "dampening") == 0


def test_a_built_optimizer_is_read_as_it_is():
    """For a built optimizer, are its own groups (defaults already in them) what the engine reports?"""
    m = net()
    opt = torch.optim.AdamW([{"params": m[0].parameters(), "lr": 0.1}, {"params": m[2].parameters()}], lr=0.3)
    r = resolve(m, opt)
    assert r.setting("0.weight", "lr") == 0.1 and r.setting("2.weight", "lr") == 0.3
    assert r.setting("2.weight", "weight_decay") == opt.defaults["weight_decay"] and not r.ignored_keys()


def test_every_problem_is_found():
    """Are a module, a foreign tensor, a repeat, a duplicate, an empty group and a missing parameter all found?"""
    m = net()
    foreign = nn.Parameter(torch.zeros(3))
    ps = m[2].parameters()
    groups = [
        {"params": [m[0].weight, m[0].weight, foreign, "x"]},
        {"params": m[2]},
        {"params": ps},
        {"params": ps},
        {"params": [m[0].weight]},
    ]
    r = resolve(m, groups)
    assert r.findings == [
        Finding("params_module", 1, "Linear", module=True),
        Finding("repeated", 0, "0.weight"),
        Finding("foreign", 0, shape=(3,)),
        Finding("not_a_tensor", 0, "str"),
    ]
    assert [s.name for s in r.duplicates()] == ["0.weight"] and r.slots["0.weight"].occurrences == (0, 0, 4)
    assert r.slots["0.weight"].groups == (0, 4)
    assert [s.name for s in r.unassigned()] == ["0.bias"]
    assert r.empty_groups() == [1, 3]


def test_ignored_and_scheduler_only_keys():
    """Is a misspelt key ignored, a torch scheduler's key read, and timm's lr_scale marked as scheduler-only?"""
    m = net()
    r = resolve(m, [{"params": m.parameters(), "learning_rate": 1, "initial_lr": 1, "name": "all", "lr_scale": 0.5}])
    assert r.ignored_keys() == {0: ["learning_rate", "lr_scale"]}
    assert r.scheduler_only_keys() == {0: ["lr_scale"]}
    assert "initial_lr" in SCHEDULER_KEYS and "name" in LABEL_KEYS


def test_named_pairs_are_unwrapped_unless_asked_not_to():
    """Are (name, tensor) pairs read as their tensors, as torch reads model.named_parameters()?"""
    m = net()
    assert not resolve(m, [{"params": list(m.named_parameters())}]).unassigned()
    kinds = {f.kind for f in resolve(m, [{"params": list(m.named_parameters())}], named=False).findings}
    assert kinds == {"not_a_tensor"}


def test_inspector_and_grading_agree():
    """Do the inspector's report and the grading checks' group map place every parameter the same way?"""
    m = net()
    groups = [{"params": list(m[0].parameters()), "lr": 0.1}, {"params": [m[2].weight]}]
    report = inspect_param_groups(m, groups, defaults={"lr": grading.SENTINEL_LR})
    gm = grading.effective_groups(m, groups)
    assert [(r.name, r.groups, r.lr) for r in report.rows] == [(n, pl.groups, pl.lr) for n, pl in gm.items()]
    assert report.kinds() == {"unassigned"}


def test_docstring_examples():
    """Do the engine's `>>>` examples hold?"""
    import doctest

    from lrdiff_helpers import resolve as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
