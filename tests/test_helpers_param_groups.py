"""Param-group builders and the inspector, on tiny models; parameters matched by identity."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import lrdiff_helpers as L


def tiny():
    """timm's test model."""
    return nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 2))


def placement(model, groups):
    """For each parameter name, the indices of the groups that hold it (by identity)."""
    where = {n: [] for n, _ in model.named_parameters()}
    ids = {id(p): n for n, p in model.named_parameters()}
    for i, g in enumerate(groups):
        for p in g["params"]:
            where[ids[id(p)]].append(i)
    return where


def assert_each_in_one(model, groups):
    for name, gs in placement(model, groups).items():
        assert len(gs) == 1, f"{name} is in groups {gs}; every trainable parameter must be in exactly one"


def test_by_module_longest_prefix_wins():
    """Does {"": base, "2": head} put the last Linear in the head group and all else in the base group?"""
    m = tiny()
    groups = L.param_groups_by_module(m, {"": 1e-3, "2": 1e-2}, momentum=0.9)
    assert_each_in_one(m, groups)
    where = placement(m, groups)
    assert where == {"0.weight": [0], "0.bias": [0], "2.weight": [1], "2.bias": [1]}
    assert [g["lr"] for g in groups] == [1e-3, 1e-2] and all(g["momentum"] == 0.9 for g in groups)


def test_by_module_none_lr_inherits_base_lr():
    """Does a group built with lr None take the optimizer's base lr (no error)?"""
    m = L.TwoPartModel()
    opt = torch.optim.SGD(L.param_groups_by_module(m, {"part1": None, "part2": 0.5}), lr=0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]


def test_by_module_rejects_typos_and_leftovers():
    m = L.TwoPartModel()
    with pytest.raises(ValueError, match="match no trainable parameter: \\['part3'\\]"):
        L.param_groups_by_module(m, {"part1": 1.0, "part2": 1.0, "part3": 1.0})
    with pytest.raises(ValueError, match="part2.weight"):
        L.param_groups_by_module(m, {"part1": 1.0})


def test_by_module_skips_frozen_parameters():
    m = L.TwoPartModel()
    m.part1.requires_grad_(False)
    groups = L.param_groups_by_module(m, {"": 1.0})
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in m.part2.parameters()}


def test_ulmfit_and_slice_lrs():
    """Is each stage 2.6x slower than the next (ULMFiT), and is slice(lo, hi) geometric (fastai)?"""
    lrs = L.ulmfit_lrs(1e-2, 6)
    assert lrs[-1] == 1e-2
    assert all(abs(b / a - 2.6) < 1e-12 for a, b in zip(lrs, lrs[1:]))
    sl = L.lr_range(1e-5, 1e-3, 6)
    assert sl[0] == pytest.approx(1e-5) and sl[-1] == pytest.approx(1e-3)
    assert all(b / a == pytest.approx((1e-3 / 1e-5) ** 0.2) for a, b in zip(sl, sl[1:]))
    assert L.lr_range(1e-4, 1e-2, 1) == [1e-2]


@pytest.mark.parametrize("make", [L.SmallResNet, lambda: torchvision.models.resnet18(num_classes=3)])
def test_layerwise_groups_on_both_resnets(make):
    """Does layer-wise decay order stem..fc, place each parameter once, and work on torchvision's resnet18?"""
    m = make()
    groups = L.layerwise_param_groups(m, 1e-2)
    assert [g["name"] for g in groups] == ["stem", "layer1", "layer2", "layer3", "layer4", "fc"]
    assert_each_in_one(m, groups)
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in [*m.conv1.parameters(), *m.bn1.parameters()]}
    assert groups[-1]["lr"] == 1e-2 and groups[-2]["lr"] == pytest.approx(1e-2 / 2.6)
    sliced = L.slice_param_groups(m, 1e-5, 1e-3)
    assert [g["lr"] for g in sliced] == pytest.approx(L.lr_range(1e-5, 1e-3, 6))


def test_stage_groups_need_one_lr_per_stage():
    with pytest.raises(ValueError, match="6 stages need 6 lrs"):
        L.stage_param_groups(L.SmallResNet(), [1.0, 2.0])


def test_weight_decay_split_finds_biases_and_all_norms():
    """Do biases and every BatchNorm parameter, downsample branches included, get weight decay 0?"""
    m = L.SmallResNet()
    base = L.param_groups_by_module(m, {"": 1e-3, "fc": 1e-2})
    groups = L.weight_decay_param_groups(m, 5e-4, base)
    assert_each_in_one(m, groups)
    wd = {}
    ids = {id(p): n for n, p in m.named_parameters()}
    for g in groups:
        for p in g["params"]:
            wd[ids[id(p)]] = (g["weight_decay"], g["lr"])
    assert wd["layer2.0.downsample.1.weight"] == (0.0, 1e-3)
    assert wd["layer2.0.downsample.0.weight"] == (5e-4, 1e-3)
    assert wd["fc.bias"] == (0.0, 1e-2) and wd["fc.weight"] == (5e-4, 1e-2)
    assert wd["bn1.weight"][0] == 0.0 and wd["conv1.weight"][0] == 5e-4
    assert [g["name"] for g in groups] == ["(rest)", "(rest)/no_decay", "fc", "fc/no_decay"]


def test_inspector_passes_a_good_optimizer():
    m = L.TwoPartModel()
    report = L.inspect_param_groups(m, torch.optim.SGD(L.param_groups_by_module(m, {"part1": 0.1, "part2": 0.01})))
    assert report.ok, report.problems
    report.assert_ok()
    assert [r.lr for r in report.rows] == [0.1, 0.1, 0.01, 0.01]
    assert "part1.weight" in str(report) and "<table>" in report._repr_html_()


def test_inspector_flags_a_parameter_in_no_group():
    """Is a parameter left out (silently never trained by torch) reported?"""
    m = L.TwoPartModel()
    report = L.inspect_param_groups(m, torch.optim.SGD(m.part1.parameters(), lr=0.1))
    assert report.kinds() == {"unassigned"}
    assert sum("part2" in p.message for p in report.problems) == 2


def test_inspector_flags_a_parameter_in_two_groups():
    """torch raises on duplicates; does the inspector name them before the optimizer is built?"""
    m = L.TwoPartModel()
    groups = [{"params": m.parameters()}, {"params": m.part2.parameters(), "lr": 1.0}]
    report = L.inspect_param_groups(m, groups)
    assert report.kinds() == {"duplicate"}
    with pytest.raises(ValueError):
        report.assert_ok()


def test_inspector_flags_an_exhausted_generator():
    """A generator used up by the first group leaves the second empty: is that an empty group, and are its params unassigned?"""
    m = L.TwoPartModel()
    gen = m.part1.parameters()
    opt = torch.optim.SGD([{"params": gen}, {"params": gen, "lr": 1.0}, {"params": m.part2.parameters()}], lr=0.1)
    report = L.inspect_param_groups(m, opt)
    assert report.kinds() == {"empty_group"}


def test_inspector_flags_a_misspelled_key():
    """Is 'learning_rate' (which torch keeps but ignores) reported, and the real lr shown as the default?"""
    m = L.TwoPartModel()
    opt = torch.optim.SGD([{"params": m.part1.parameters(), "learning_rate": 1.0},
                           {"params": m.part2.parameters()}], lr=0.1)
    report = L.inspect_param_groups(m, opt)
    assert report.kinds() == {"ignored_key"}
    assert report.rows[0].lr == 0.1
    assert "learning_rate" in report.problems[0].message


def test_inspector_flags_modules_and_foreign_tensors():
    m = L.TwoPartModel()
    report = L.inspect_param_groups(m, [{"params": [m.part1]}, {"params": [torch.zeros(2, requires_grad=True)]}])
    assert {"not_a_tensor", "foreign", "unassigned"} <= report.kinds()


def test_inspector_accepts_scheduler_keys_and_names():
    """Keys that schedulers add (initial_lr, max_lr ...) and a 'name' label are not typos."""
    m = L.TwoPartModel()
    opt = torch.optim.SGD(L.param_groups_by_module(m, {"part1": 0.1, "part2": 0.01}), lr=0.1, momentum=0.9)
    torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.1, 0.01], total_steps=10)
    assert L.inspect_param_groups(m, opt).ok


def test_inspector_uses_list_defaults():
    """For a list of dicts, does a group without 'lr' show the default the optimizer will use?"""
    m = L.TwoPartModel()
    report = L.inspect_param_groups(m, [{"params": m.part1.parameters()}, {"params": m.part2.parameters(), "lr": 1.0}],
                                    optimizer_cls=torch.optim.Adam, defaults={"lr": 0.5})
    assert report.ok and [r.lr for r in report.rows] == [0.5, 0.5, 1.0, 1.0]
