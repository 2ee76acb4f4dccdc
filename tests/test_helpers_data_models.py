"""Data, models and the checkpoint registry of lrdiff_helpers."""

from __future__ import annotations

import shutil

import pytest
import torch
import torchvision

import lrdiff_helpers as L
from lrdiff_helpers import data as data_mod
from lrdiff_helpers import hub


def test_torchvision_really_loads():
    """Does torchvision import with its compiled ops (the 2.13.0 trap: `torchvision::nms does not exist`)?"""
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    keep = torchvision.ops.nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert keep.tolist() == [0]


def test_digits_are_real_and_checked():
    """Are the digits the 1797 real 8x8 images, scaled to [0, 1]?"""
    x, y = L.load_digits()
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.bincount(y).min() >= 170  # about 180 of each digit


def test_digits_checksum_is_enforced(monkeypatch):
    """Does a change in the bundled data raise instead of silently changing the course's numbers?"""
    monkeypatch.setattr(data_mod, "DIGITS_SHA256", "0" * 64)
    data_mod._raw_digits.cache_clear()
    try:
        with pytest.raises(data_mod.DataChecksumError, match="sha256"):
            L.load_digits()
    finally:
        data_mod._raw_digits.cache_clear()


def test_source_and_target_are_disjoint_halves():
    """Does every image belong to exactly one of source and target, half of each digit in each?"""
    src, tgt = data_mod._source_target_indices()
    assert set(src.tolist()).isdisjoint(tgt.tolist())
    assert len(src) + len(tgt) == 1797
    _, y = L.load_digits()
    assert (torch.bincount(y[src]) - torch.bincount(y[tgt])).abs().max() <= 1


def test_target_task_is_deterministic_and_few_shot():
    """Does a seed fix the few-shot sample, with `shots` images per class, and the noise stay fixed?"""
    a_train, a_val = L.target_task(shots=5, seed=3)
    b_train, b_val = L.target_task(shots=5, seed=3)
    c_train, _ = L.target_task(shots=5, seed=4)
    assert torch.equal(a_train.x, b_train.x) and torch.equal(a_val.y, b_val.y)
    assert not torch.equal(a_train.x, c_train.x)
    assert torch.bincount(a_train.y).tolist() == [5] * 10
    assert len(a_train) + len(a_val) == 901
    clean_train, _ = L.target_task(shots=5, noise=0.0, seed=3)
    assert torch.equal(clean_train.y, a_train.y) and not torch.equal(clean_train.x, a_train.x)


def test_target_task_rejects_bad_shots():
    with pytest.raises(ValueError, match="shots"):
        L.target_task(shots=0)
    with pytest.raises(ValueError, match="no validation images"):
        L.target_task(shots=1000)


def test_small_resnet_mirrors_torchvision_names():
    """Does SmallResNet have torchvision ResNet's attribute names, so code for one runs on the other?"""
    small, big = L.SmallResNet(), torchvision.models.resnet18(num_classes=10)
    assert isinstance(small, torchvision.models.ResNet)
    top = lambda m: [n for n, _ in m.named_children()]  # noqa: E731
    assert top(small) == top(big) == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"]
    assert sum(p.numel() for p in small.parameters()) < 400_000
    assert small(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_pretrained_backbone_loads_and_head_is_new():
    """Does the checkpoint fill every tensor but the head, and does `seed` fix the new head?"""
    state = L.load_state_dict("small_resnet_digits")
    assert not any(k.startswith("fc.") for k in state)
    m1, m2 = L.pretrained_small_resnet(seed=1), L.pretrained_small_resnet(seed=1)
    assert torch.equal(m1.fc.weight, m2.fc.weight)
    assert not torch.equal(m1.fc.weight, L.pretrained_small_resnet(seed=2).fc.weight)
    assert torch.equal(m1.conv1.weight, state["conv1.weight"])
    assert torch.equal(m1.layer4[0].bn2.running_var, state["layer4.0.bn2.running_var"])


def test_checkpoint_checksum_is_enforced(tmp_path):
    """Does a corrupted checkpoint raise ChecksumError, and a missing one say how to re-make it?"""
    bad = tmp_path / "bad.pt"
    shutil.copy(hub.checkpoint_path("small_resnet_digits"), bad)
    with open(bad, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(L.ChecksumError, match="sha256"):
        L.load_state_dict("small_resnet_digits", path=bad)
    with pytest.raises(FileNotFoundError, match="pretrain_backbone.py"):
        L.load_state_dict("small_resnet_digits", path=tmp_path / "missing.pt")
    with pytest.raises(KeyError, match="known"):
        L.load_state_dict("no_such_checkpoint")


def test_checkpoint_is_small():
    assert hub.checkpoint_path("small_resnet_digits").stat().st_size < 3_000_000


def test_pretrain_script_runs(tmp_path, root):
    """Does the script that makes the checkpoint run and write a loadable backbone?"""
    import subprocess
    import sys

    out = tmp_path / "ckpt.pt"
    res = subprocess.run(
        [sys.executable, str(root / "scripts" / "pretrain_backbone.py"), "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "sha256" in res.stdout
    state = torch.load(out, weights_only=True)
    missing, unexpected = L.SmallResNet().load_state_dict(state, strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected
