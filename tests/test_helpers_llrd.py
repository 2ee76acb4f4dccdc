"""Layer-wise lr decay (lrdiff_helpers.llrd) on tiny ViTs; parameters matched by identity, compared with timm."""

from __future__ import annotations

import math

import pytest
import torch
from timm.optim import create_optimizer_v2, param_groups_layer_decay

from lrdiff_helpers.inspector import inspect_param_groups
from lrdiff_helpers.llrd import (apply_lr_scale, llrd_param_groups, llrd_scales, no_weight_decay_names,
                                 vit_layer_ids, warmup_cosine)
from lrdiff_helpers.vit import tiny_vit


def tiny(depth: int = 2):
    """A tiny timm ViT (width 8, 2 blocks by default), built from config: nothing is downloaded."""
    torch.manual_seed(0)
    return tiny_vit(embed_dim=8, depth=depth, num_heads=2)


def effective(model, groups):
    """For each parameter name, (lr, weight decay) of the one group that holds it, matched by identity."""
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for g in groups:
        for p in g["params"]:
            name = names[id(p)]
            assert name not in out, f"{name} is in two groups; a parameter must be in exactly one"
            out[name] = (g["lr"], g["weight_decay"])
    return out


def test_every_parameter_in_exactly_one_group():
    """Does every trainable parameter land in exactly one group, and nothing else?"""
    m = tiny()
    got = effective(m, llrd_param_groups(m, 1e-3, 0.75, 0.05))
    assert sorted(got) == sorted(n for n, _ in m.named_parameters())


def test_layer_ids_follow_mae():
    """Embeddings at 0, blocks.i at i + 1, final norm and head at the top?"""
    m = tiny(depth=3)
    ids = vit_layer_ids(m)
    for name, layer in ids.items():
        if name.startswith(("cls_token", "pos_embed", "patch_embed")):
            assert layer == 0, name
        elif name.startswith("blocks."):
            assert layer == int(name.split(".")[1]) + 1, name
        else:
            assert name.startswith(("norm.", "head.")) and layer == 4, name


def test_lrs_decay_geometrically_from_the_head():
    """Is layer k's lr exactly lr * decay ** (top - k)?"""
    m = tiny()
    ids = vit_layer_ids(m)
    for name, (lr, _) in effective(m, llrd_param_groups(m, 1e-2, 0.5)).items():
        assert lr == pytest.approx(1e-2 * 0.5 ** (3 - ids[name])), name
    assert llrd_scales(4, 0.5) == [0.125, 0.25, 0.5, 1.0]


def test_no_weight_decay_rule():
    """Do biases, norms, ndim<2 parameters, cls_token and pos_embed get weight decay 0, and only they?"""
    m = tiny()
    skip = no_weight_decay_names(m)
    for name, p in m.named_parameters():
        expected = p.ndim < 2 or name in ("cls_token", "pos_embed")
        assert (name in skip) == expected, name
    for name, (_, wd) in effective(m, llrd_param_groups(m, 1e-3, 0.75, 0.05)).items():
        assert wd == (0.0 if name in skip else 0.05), name


def test_decay_one_is_one_lr_for_all():
    """Does decay=1 give every parameter the base lr?"""
    m = tiny()
    assert {lr for lr, _ in effective(m, llrd_param_groups(m, 3e-3, 1.0)).values()} == {3e-3}


def test_frozen_and_zero_lr_parameters_are_left_out():
    """Are parameters with requires_grad=False, and layers whose lr is 0, in no group?"""
    m = tiny()
    m.cls_token.requires_grad_(False)
    got = effective(m, llrd_param_groups(m, 1e-3, 0.75))
    assert "cls_token" not in got and "pos_embed" in got
    top_only = effective(m, llrd_param_groups(m, 1e-3, 0.0))
    assert sorted(top_only) == ["head.bias", "head.weight", "norm.bias", "norm.weight"]


def test_agrees_with_timm_except_the_final_norm():
    """Once lr_scale is applied, does timm's param_groups_layer_decay agree with ours on every parameter but norm.*?

    timm puts the final norm in the last block's layer; MAE and BEiT (and this course) put it at the top.
    """
    m = tiny()
    ours = effective(m, llrd_param_groups(m, 1e-3, 0.75, 0.05))
    timm_groups = param_groups_layer_decay(m, weight_decay=0.05, layer_decay=0.75,
                                           no_weight_decay_list=m.no_weight_decay())
    theirs = effective(m, apply_lr_scale(timm_groups, 1e-3))
    differ = sorted(n for n in ours if ours[n][0] != pytest.approx(theirs[n][0]) or ours[n][1] != theirs[n][1])
    assert differ == ["norm.bias", "norm.weight"]
    assert theirs["norm.weight"][0] == pytest.approx(0.75 * ours["norm.weight"][0])


def test_timm_without_no_weight_decay_list_decays_cls_token_and_pos_embed():
    """Called without no_weight_decay_list, does timm decay cls_token and pos_embed (and nothing else extra)?"""
    m = tiny()
    timm_groups = param_groups_layer_decay(m, weight_decay=0.05, layer_decay=0.75)
    wd = {n: v for n, (_, v) in effective(m, apply_lr_scale(timm_groups, 1e-3)).items()}
    skip = no_weight_decay_names(m)
    assert sorted(n for n in skip if wd[n] != 0.0) == ["cls_token", "pos_embed"]


def test_create_optimizer_v2_ignores_its_own_lr_scale():
    """Does create_optimizer_v2(layer_decay=...) give every group the base lr, and does the inspector flag lr_scale?"""
    m = tiny()
    opt = create_optimizer_v2(m, "adamw", lr=1e-3, layer_decay=0.75)
    assert {g["lr"] for g in opt.param_groups} == {1e-3}
    assert len({g["lr_scale"] for g in opt.param_groups}) > 1
    report = inspect_param_groups(m, opt)
    assert report.kinds() == {"ignored_key"} and all("lr_scale" in p.message for p in report.problems)


def test_timm_scheduler_applies_lr_scale():
    """Does timm's own scheduler multiply each group's lr by its lr_scale?"""
    from timm.scheduler import CosineLRScheduler

    m = tiny()
    opt = create_optimizer_v2(m, "adamw", lr=1e-3, layer_decay=0.5)
    CosineLRScheduler(opt, t_initial=10, warmup_t=0, t_in_epochs=False)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-3 * g["lr_scale"])


def test_apply_lr_scale_is_clean_for_the_inspector():
    """After apply_lr_scale, does the inspector find no problem and the lrs of our groups (but norm.*)?"""
    m = tiny()
    groups = apply_lr_scale(param_groups_layer_decay(m, 0.05, m.no_weight_decay(), layer_decay=0.75), 1e-3)
    report = inspect_param_groups(m, groups, torch.optim.AdamW)
    assert report.ok, str(report)


def test_warmup_keeps_the_ratios_between_groups():
    """Does LambdaLR with warmup_cosine scale every group by the same factor at every step?"""
    m = tiny()
    groups = llrd_param_groups(m, 1e-3, 0.5)
    opt = torch.optim.AdamW(groups)
    base = [g["lr"] for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(3, 10))
    f = warmup_cosine(3, 10)
    for step in range(10):
        for g, b in zip(opt.param_groups, base):
            assert g["lr"] == pytest.approx(b * f(step))
        opt.step()
        sched.step()


@pytest.mark.parametrize("depth, width, heads, lr, decay, wd", [
    (4, 32, 2, 1e-3, 0.75, 0.05), (2, 16, 2, 3e-3, 0.5, 1e-2), (6, 8, 1, 1e-2, 0.9, 0.1), (1, 16, 2, 2e-4, 0.65, 0.0),
])
def test_graded_part_f_agrees_with_timm(depth, width, heads, lr, decay, wd):
    """Are the graded exercise's expected lrs and weight decays (Part F) exactly what timm's
    param_groups_layer_decay gives each parameter, with the model's no_weight_decay() list?"""
    from timm.optim import param_groups_layer_decay

    from lrdiff_helpers import grading

    model = tiny_vit(depth=depth, embed_dim=width, num_heads=heads, num_classes=3)
    timm_groups = param_groups_layer_decay(model, weight_decay=wd, no_weight_decay_list=model.no_weight_decay(),
                                           layer_decay=decay)
    names = {id(p): n for n, p in model.named_parameters()}
    timm_lr = {names[id(p)]: lr * g["lr_scale"] for g in timm_groups for p in g["params"]}
    timm_wd = {names[id(p)]: g["weight_decay"] for g in timm_groups for p in g["params"]}
    want_lr = {n: v for n, (v, _) in grading.expected_vit_llrd_lrs(model, lr, decay).items()}
    want_wd = {n: v for n, (v, _) in grading.expected_vit_weight_decays(model, wd).items()}
    assert set(want_lr) == set(timm_lr) == set(names.values())
    assert all(math.isclose(want_lr[n], timm_lr[n], rel_tol=1e-12) for n in want_lr), \
        {n: (want_lr[n], timm_lr[n]) for n in want_lr if not math.isclose(want_lr[n], timm_lr[n], rel_tol=1e-12)}
    assert want_wd == timm_wd
