"""A small, seeded train/evaluate loop that records each param group's lr at every step.

Fast on 2 CPU cores: the data are tensors in memory (no ``DataLoader`` workers, no per-image PIL work).
Introduced in ``notebooks/03_sample_model.ipynb`` and used throughout ``notebooks/04_experiment.ipynb``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .data import Split

__all__ = ["History", "default_device", "evaluate", "fit", "seed_everything"]


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global RNGs (and CUDA's, when present)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def default_device() -> torch.device:
    """The GPU when one is present, the CPU otherwise."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class History:
    """What ``fit`` measured.

    Per epoch: ``train_loss`` (mean over the epoch's steps), ``train_acc`` and ``val_acc`` / ``val_loss``
    (evaluated in ``eval()`` mode after the epoch). Per step: ``lrs[step][group]``, each group's lr used by
    that step.
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    lrs: list[list[float]] = field(default_factory=list)
    seconds: float = 0.0
    #: Final accuracy on a held-out test split, when the caller measured one (``finetune`` does).
    test_acc: float = float("nan")

    @property
    def epochs(self) -> int:
        return len(self.train_loss)

    @property
    def gap(self) -> float:
        """Final train accuracy minus final validation accuracy."""
        return self.train_acc[-1] - self.val_acc[-1]

    def lrs_of_group(self, group: int) -> list[float]:
        return [step[group] for step in self.lrs]


@torch.no_grad()
def evaluate(model: nn.Module, data: Split, batch_size: int = 1024) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``, in ``eval()`` mode.

    The model's train/eval mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total_loss, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        x = data.x[start : start + batch_size].to(device)
        y = data.y[start : start + batch_size].to(device)
        out = model(x)
        total_loss += nn.functional.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    return total_loss / len(data), correct / len(data)


def _progress(total: int, desc: str | None, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm  # a widget in JupyterLab, text in a terminal

    return tqdm(total=total, desc=desc, leave=False)


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    val: Split | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 32,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    desc: str | None = None,
    every_epoch: bool = True,
) -> History:
    """Train ``model`` with ``optimizer`` for ``epochs`` epochs; return a :class:`History`.

    Each epoch shuffles ``train`` (with a generator seeded by ``seed``) and takes only *full* batches:
    a last batch of a handful of images would give BatchNorm useless statistics. If ``train`` is smaller
    than ``batch_size``, the batch is the whole training set. ``scheduler.step()`` runs after every step.

    Args:
        model: the model; moved to ``device``.
        optimizer: an optimizer over (some of) the model's parameters.
        train: training images and labels.
        val: validation images and labels, evaluated after every epoch when given.
        epochs: passes over ``train``.
        batch_size: images per step.
        scheduler: stepped once per optimizer step.
        seed: seeds the shuffling and the global RNGs (dropout, say).
        device: defaults to :func:`default_device`.
        progress: show a progress bar (a widget in JupyterLab).
        desc: the progress bar's label.
        every_epoch: evaluate after every epoch (curves); ``False`` evaluates after the last epoch only, which
            is faster when only the final numbers matter (the training itself is the same).

    >>> from lrdiff_helpers import TwoPartModel, Split
    >>> m = TwoPartModel(d_out=2)
    >>> data = Split(torch.randn(64, 10), torch.randint(0, 2, (64,)))
    >>> h = fit(m, torch.optim.SGD(m.parameters(), lr=0.1), data, epochs=2, progress=False)
    >>> len(h.train_loss), len(h.lrs)
    (2, 4)
    """
    import time

    device = torch.device(device) if device is not None else default_device()
    seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    model.to(device)
    # The optimizer's state (momentum buffers) is created lazily, so moving the model first is enough.
    x_all, y_all = train.x.to(device), train.y.to(device)
    n = len(train)
    bs = min(batch_size, n)
    steps_per_epoch = n // bs
    history = History()
    bar = _progress(epochs * steps_per_epoch, desc, progress)
    start = time.perf_counter()
    try:
        for _ in range(epochs):
            model.train()
            order = torch.randperm(n, generator=g).to(device)
            losses = []
            for step in range(steps_per_epoch):
                idx = order[step * bs : (step + 1) * bs]
                history.lrs.append([group["lr"] for group in optimizer.param_groups])
                optimizer.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(x_all[idx]), y_all[idx])
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                losses.append(loss.item())
                if bar is not None:
                    bar.update(1)
            history.train_loss.append(float(np.mean(losses)))
            if not every_epoch and len(history.train_loss) < epochs:
                continue  # evaluation only reads the model (eval mode, no gradients): skipping it changes nothing
            history.train_acc.append(evaluate(model, train)[1])
            if val is not None:
                val_loss, val_acc = evaluate(model, val)
                history.val_loss.append(val_loss)
                history.val_acc.append(val_acc)
                if bar is not None:
                    bar.set_postfix(val_acc=f"{val_acc:.3f}")
    finally:
        if bar is not None:
            bar.close()
    history.seconds = time.perf_counter() - start
    return history
