"""Tests of lrdiff_helpers.modern on tiny CPU models; parameters are matched by identity, never by name or value."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from lrdiff_helpers.inspector import inspect_param_groups
from lrdiff_helpers.modern import loraplus_param_groups, muon_adamw_split, mup_param_groups


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _group_of(groups: list[dict]) -> dict[int, str]:
    """Each parameter's group name, checking on the way that no parameter is in two groups."""
    where: dict[int, str] = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in where, f"a parameter is in groups {where[id(p)]} and {g['name']}"
            where[id(p)] = g["name"]
    return where


def _lora_model() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 2))
    return get_peft_model(net, LoraConfig(r=2, target_modules=["0", "2"], modules_to_save=["4"]))


def _lora_params(model: nn.Module, factor: str) -> list[nn.Parameter]:
    return [m.weight for name, m in model.named_modules() if name.endswith(f"{factor}.default")]


def test_loraplus_puts_every_b_factor_at_ratio_times_lr():
    """Is every B factor at ratio * lr, every A factor and the trainable head at lr, and nothing else grouped?"""
    model = _lora_model()
    groups = loraplus_param_groups(model, lr=1e-3, ratio=16)
    where = _group_of(groups)
    lr_of = {g["name"]: g["lr"] for g in groups}
    a, b = _lora_params(model, "lora_A"), _lora_params(model, "lora_B")
    head = list(model.base_model.model[4].modules_to_save["default"].parameters())
    assert len(a) == len(b) == 2 and len(head) == 2
    assert {where[id(p)] for p in b} == {"lora_B"} and lr_of["lora_B"] == pytest.approx(16e-3)
    assert {where[id(p)] for p in a} == {"lora_A"} and lr_of["lora_A"] == 1e-3
    assert {where[id(p)] for p in head} == {"other"} and lr_of["other"] == 1e-3
    trainable = _ids(p for p in model.parameters() if p.requires_grad)
    assert set(where) == trainable, "every trainable parameter, and only those, must be in a group"


def test_loraplus_ratio_one_is_plain_lora_and_no_group_is_empty():
    """With ratio 1 does every group have the same lr, and with no trainable head is the 'other' group left out?"""
    torch.manual_seed(0)
    model = get_peft_model(nn.Sequential(nn.Linear(4, 3)), LoraConfig(r=1, target_modules=["0"]))
    groups = loraplus_param_groups(model, lr=0.1, ratio=1)
    assert [g["name"] for g in groups] == ["lora_A", "lora_B"]
    assert {g["lr"] for g in groups} == {0.1}
    assert inspect_param_groups(model, groups, optimizer_cls=torch.optim.Adam).ok


def test_loraplus_agrees_with_peft_on_the_factors():
    """Do peft's create_loraplus_optimizer and the hand-written groups give each A and B factor the same lr?"""
    from peft.optimizers import create_loraplus_optimizer

    model = _lora_model()
    peft_lr = {id(p): g["lr"] for g in create_loraplus_optimizer(
        model, torch.optim.Adam, lr=1e-3, loraplus_lr_ratio=16).param_groups for p in g["params"]}
    ours = {id(p): g["lr"] for g in loraplus_param_groups(model, 1e-3, 16) for p in g["params"]}
    for p in _lora_params(model, "lora_A") + _lora_params(model, "lora_B"):
        assert ours[id(p)] == pytest.approx(peft_lr[id(p)])


def test_muon_gets_the_hidden_matrices_only():
    """Does Muon get the 2-D weights of the hidden Linear layers, and AdamW the head, biases and norms?"""
    net = nn.Sequential(nn.Linear(10, 5), nn.LayerNorm(5), nn.ReLU(), nn.Linear(5, 5), nn.Linear(5, 2))
    muon, adamw = muon_adamw_split(net, head="4")
    assert _ids(muon[0]["params"]) == {id(net[0].weight), id(net[3].weight)}
    expected = {id(net[0].bias), id(net[1].weight), id(net[1].bias), id(net[3].bias), id(net[4].weight),
                id(net[4].bias)}
    assert _ids(adamw[0]["params"]) == expected
    assert inspect_param_groups(net, muon + adamw).ok


def test_muon_accepts_its_split_and_both_optimizers_train():
    """Does torch.optim.Muon accept the split it would reject whole, and do both optimizers' steps move their parts?"""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match="2D"):
        torch.optim.Muon(net.parameters())
    muon_groups, adamw_groups = muon_adamw_split(net, head="4")
    opts = [torch.optim.Muon(muon_groups, lr=0.02), torch.optim.AdamW(adamw_groups, lr=1e-2)]
    before = [p.detach().clone() for p in net.parameters()]
    nn.functional.cross_entropy(net(torch.randn(16, 6)), torch.randint(0, 3, (16,))).backward()
    for opt in opts:
        opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_muon_split_skips_frozen_parameters():
    """Is a frozen parameter left out of both optimizers?"""
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 2))
    net[0].requires_grad_(False)
    muon, adamw = muon_adamw_split(net, head="2")
    assert _ids(muon[0]["params"]) == {id(net[1].weight)}
    assert not _ids(net[0].parameters()) & (_ids(muon[0]["params"]) | _ids(adamw[0]["params"]))


def _mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def test_mup_scales_hidden_and_output_weights_by_one_over_width():
    """At 8x the base width, do hidden and output weights get base_lr / 8, and input weights and biases base_lr?"""
    model = _mlp(256)
    groups = mup_param_groups(model, base_lr=0.1, base_model=_mlp(32))
    lr = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert len(lr) == sum(1 for _ in model.parameters()), "a parameter is missing or twice"
    for p in (model[2].weight, model[4].weight):
        assert lr[id(p)] == pytest.approx(0.1 / 8)
    for p in (model[0].weight, model[0].bias, model[2].bias, model[4].bias):
        assert lr[id(p)] == 0.1


def test_mup_at_the_base_width_is_one_lr_for_all():
    """At the base width, is there a single group with the base lr?"""
    groups = mup_param_groups(_mlp(32), base_lr=3e-3, base_model=_mlp(32))
    assert [(g["name"], g["lr"]) for g in groups] == [("lr x 1", 3e-3)]


def test_mup_keeps_embeddings_and_convolution_inputs_unscaled():
    """Do an nn.Embedding and a convolution whose input channels are fixed keep base_lr, while a wider conv's
    fan-in scales it?"""
    def net(width: int) -> nn.Module:
        return nn.ModuleDict({"emb": nn.Embedding(50, width), "stem": nn.Conv2d(3, width, 3),
                              "conv": nn.Conv2d(width, width, 3), "out": nn.Linear(width, 5)})

    model = net(64)
    lr = {id(p): g["lr"] for g in mup_param_groups(model, 1.0, net(16)) for p in g["params"]}
    assert lr[id(model["emb"].weight)] == 1.0 and lr[id(model["stem"].weight)] == 1.0
    assert lr[id(model["conv"].weight)] == 0.25 and lr[id(model["out"].weight)] == 0.25


def test_mup_refuses_a_base_model_of_another_architecture():
    """Does a base model without one of the model's layers raise, naming the layer?"""
    with pytest.raises(ValueError, match="'2'"):
        mup_param_groups(_mlp(64), 1e-3, nn.Sequential(nn.Linear(64, 32)))
