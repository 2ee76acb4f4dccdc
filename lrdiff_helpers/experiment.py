"""The course's fine-tuning recipe: the pretrained backbone, a new head, the noisy few-shot target task.

One function, :func:`finetune`, runs it with a backbone lr and a head lr; ``notebooks/04_experiment.ipynb``
compares settings with it and ``source/lrdiff/experiment.ipynb`` grades a student's choice with it.
Everything but the two lrs (and the seed) is fixed by :data:`RECIPE`; :data:`COUNTEREXAMPLE` is the same
recipe on a transfer where the backbone's features do not fit (pretrained on digits 0-4, fine-tuned on 5-9).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
from torch import nn

from .data import DIGITS, target_splits
from .models import SmallResNet, pretrained_small_resnet
from .train import History, evaluate, fit

__all__ = ["COUNTEREXAMPLE", "RECIPE", "Recipe", "backbone_head_groups", "finetune"]


@dataclass(frozen=True)
class Recipe:
    """Everything about a fine-tuning run except the lrs and the seed."""

    shots: int = 5  # labelled target images per class
    noise: float = 0.4  # the target's shift: additive pixel noise
    epochs: int = 20
    batch_size: int = 25  # 50 images / 25 = 2 steps per epoch, 40 steps in all
    momentum: float = 0.9  # SGD's
    num_classes: int = 10
    checkpoint: str = "small_resnet_digits"  # the pretrained backbone (``lrdiff_helpers.hub``)
    digits: tuple[int, ...] = DIGITS  # the target task's classes


RECIPE = Recipe()
#: The same recipe where pretraining fits badly: a backbone pretrained on digits 0-4, fine-tuned on 5-9.
COUNTEREXAMPLE = replace(RECIPE, checkpoint="small_resnet_digits_0to4", digits=(5, 6, 7, 8, 9))


def backbone_head_groups(model: nn.Module, backbone_lr: float, head_lr: float) -> list[dict[str, Any]]:
    """Two param groups: everything but ``model.fc`` at ``backbone_lr``, ``model.fc`` at ``head_lr``.

    A ``backbone_lr`` of 0 *freezes* the backbone instead: its parameters get ``requires_grad=False`` and
    are left out, so no time is spent on their gradients.

    >>> from lrdiff_helpers import SmallResNet
    >>> [(g["name"], g["lr"]) for g in backbone_head_groups(SmallResNet(), 1e-4, 1e-2)]
    [('backbone', 0.0001), ('head', 0.01)]
    """
    head = list(model.fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [{"params": head, "lr": head_lr, "name": "head"}]
    if backbone_lr == 0:
        for p in backbone:
            p.requires_grad_(False)
    else:
        groups.insert(0, {"params": backbone, "lr": backbone_lr, "name": "backbone"})
    return groups


def finetune(
    backbone_lr: float,
    head_lr: float,
    seed: int = 0,
    optimizer: Literal["sgd", "adam"] = "sgd",
    from_scratch: bool = False,
    recipe: Recipe = RECIPE,
    progress: bool = False,
    device: torch.device | str | None = None,
    curves: bool = True,
) -> History:
    """Fine-tune the pretrained backbone with a new head on the target task; return the history.

    The history's curves are on the train and validation splits; ``test_acc`` is the final accuracy on the
    held-out test split (:func:`lrdiff_helpers.data.target_splits`), to report, never to choose on.

    Args:
        backbone_lr: lr of every parameter but the head's (0: frozen backbone).
        head_lr: lr of the new head ``fc``.
        seed: chooses the labelled target images, the head's initialization and the batch order.
        optimizer: ``"sgd"`` (with ``recipe.momentum``) or ``"adam"``.
        from_scratch: start from a randomly initialized backbone instead of the pretrained one
            (same head initialization), to check that pretraining helps at all.
        recipe: everything else.
        progress: show a progress bar.
        curves: evaluate after every epoch; ``False``: after the last one only (same final numbers, faster).

    >>> h = finetune(1e-4, 1e-2, seed=0)
    >>> h.val_acc[-1] > 0.5, h.test_acc > 0.5
    (True, True)
    """
    train, val, test = target_splits(shots=recipe.shots, noise=recipe.noise, seed=seed, digits=recipe.digits)
    model = pretrained_small_resnet(num_classes=recipe.num_classes, seed=seed, checkpoint=recipe.checkpoint)
    if from_scratch:
        head = model.fc
        torch.manual_seed(seed)
        model = SmallResNet(num_classes=recipe.num_classes)
        model.fc = head
    groups = backbone_head_groups(model, backbone_lr, head_lr)
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, momentum=recipe.momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam(groups)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    desc = f"{optimizer} backbone {backbone_lr:g} / head {head_lr:g}"
    history = fit(model, opt, train, val, epochs=recipe.epochs, batch_size=recipe.batch_size, seed=seed,
                  progress=progress, desc=desc, device=device, every_epoch=curves)
    history.test_acc = evaluate(model, test)[1]
    return history
