"""The training loop, the fine-tuning recipe and the plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

import lrdiff_helpers as L  # noqa: E402


def toy(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=g)
    return L.Split(x, (x[:, 0] > 0).long())


def test_fit_is_seeded_and_records_each_groups_lr():
    """Do two runs with the same seed give the same history, and is each group's lr recorded per step?"""
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        m = L.TwoPartModel()
        opt = torch.optim.SGD(L.param_groups_by_module(m, {"part1": 0.01, "part2": 0.1}), momentum=0.9)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, [lambda s: 1.0, lambda s: 0.5 ** s])
        runs.append(L.fit(m, opt, toy(), toy(seed=1), epochs=3, batch_size=16, scheduler=sched, seed=5, progress=False))
    a, b = runs
    assert a.train_loss == b.train_loss and a.val_acc == b.val_acc
    assert len(a.lrs) == 3 * 4 and a.lrs[0] == [0.01, 0.1] and a.lrs[1] == [0.01, 0.05]
    assert a.lrs_of_group(0) == [0.01] * 12
    assert a.epochs == 3 and len(a.val_loss) == 3 and a.seconds > 0


def test_fit_trains_and_uses_only_full_batches():
    """Does the loop learn a separable toy task, skipping the short last batch (BatchNorm trap)?"""
    torch.manual_seed(0)
    m = L.TwoPartModel()
    h = L.fit(m, torch.optim.SGD(m.parameters(), lr=0.5), toy(70), toy(64, seed=1), epochs=20, batch_size=32, progress=False)
    assert len(h.lrs) == 20 * 2  # 70 // 32 = 2 full batches per epoch
    assert h.val_acc[-1] > 0.9 and h.train_loss[-1] < h.train_loss[0]


def test_evaluate_restores_training_mode():
    m = L.SmallResNet()
    m.train()
    train, _ = L.target_task(shots=1)
    loss, acc = L.evaluate(m, train)
    assert m.training and loss > 0 and 0 <= acc <= 1


def test_finetune_beats_chance_quickly():
    """Does the pretrained backbone, fine-tuned with one reasonable setting, give clearly above-chance accuracy?"""
    h = L.finetune(1e-4, 1e-2, seed=0)
    assert h.val_acc[-1] > 0.6, f"val acc {h.val_acc[-1]:.3f}; chance is 0.1"
    assert h.seconds < 60


def test_finetune_frozen_backbone_leaves_backbone_untouched():
    torch.manual_seed(0)
    before = L.pretrained_small_resnet(seed=0).state_dict()
    h = L.finetune(0.0, 1e-2, seed=0, optimizer="adam")
    assert len(h.lrs[0]) == 1  # only the head's group
    with pytest.raises(ValueError, match="optimizer"):
        L.finetune(1e-3, 1e-2, optimizer="rmsprop")
    assert before["conv1.weight"].shape[0] == 16


def test_backbone_head_groups_place_each_parameter_once():
    m = L.SmallResNet()
    groups = L.backbone_head_groups(m, 1e-4, 1e-2)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in m.fc.parameters()}


def test_plots_draw(tmp_path):
    """Do the plots draw without error and label what they show?"""
    import matplotlib.pyplot as plt

    m = L.SmallResNet()
    opt = torch.optim.SGD(L.layerwise_param_groups(m, 1e-2))
    ax = L.plot_lr_per_layer(m, opt)
    assert ax.get_ylabel() == "lr" and len(ax.patches) == len(list(m.parameters()))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert [bar.get_height() for bar in ax.patches] == pytest.approx([lr_of[id(p)] for p in m.parameters()])
    assert [t.get_text() for t in ax.get_xticklabels()] == [n for n, _ in m.named_parameters()]
    assert ax.get_yscale() == "log" and ax.get_legend() is None  # every parameter has a group: no red x
    two = L.TwoPartModel()
    ax = L.plot_lr_per_layer(two, [{"params": two.part1.parameters(), "lr": 0.1}], log=False)
    assert [bar.get_height() for bar in ax.patches][:2] == pytest.approx([0.1, 0.1])
    assert [ln.get_label() for ln in ax.get_lines()] == ["in no group"] and list(ax.get_lines()[0].get_xdata()) == [2, 3]
    assert ax.get_yscale() == "linear"
    h = L.fit(L.TwoPartModel(), torch.optim.SGD(L.TwoPartModel().parameters(), lr=0.1), toy(), toy(seed=1), epochs=2, progress=False)
    ax = L.plot_history({"a": [h, h]})
    assert [ln.get_label() for ln in ax.get_lines()] == ["a (train)", "a (val)"], [ln.get_label() for ln in ax.get_lines()]
    assert list(ax.get_lines()[1].get_ydata()) == h.val_acc and ax.get_ylabel() == "accuracy"
    assert list(ax.get_lines()[0].get_ydata()) == h.train_acc and list(ax.get_lines()[0].get_xdata()) == [1, 2]
    assert len(ax.collections) == 2 and ax.get_xlabel() == "epoch"  # a min-max band per split (two seeds)
    ax = L.plot_history(h, metric="loss")
    assert [ln.get_label() for ln in ax.get_lines()] == ["run (train)", "run (val)"] and ax.get_ylabel() == "loss"
    assert list(ax.get_lines()[1].get_ydata()) == h.val_loss and len(ax.collections) == 0  # one run: no band
    ax = L.plot_lr_schedule(h, ["all"])
    assert [ln.get_label() for ln in ax.get_lines()] == ["all"] and list(ax.get_lines()[0].get_ydata()) == h.lrs_of_group(0)
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "lr"
    ax = L.plot_sweep({"one lr": {1e-2: [50, 70], 1e-3: [60, 62]}, "ratio": {1e-3: [65, 66]}})
    assert [ln.get_label() for ln in ax.get_lines()] == ["one lr", "ratio"] and ax.get_xscale() == "log"
    assert list(ax.get_lines()[0].get_xdata()) == [1e-3, 1e-2] and list(ax.get_lines()[0].get_ydata()) == [61, 60]
    assert len(ax.collections) == 2 and ax.get_xlabel() == "head lr"
    plt.savefig(tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000
    plt.close("all")
