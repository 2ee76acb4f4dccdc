"""Pictures of the course: lr per layer, lr schedules per group, training curves, lr heatmaps.

Every function draws on a given matplotlib ``Axes`` (or a new one) and returns it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .inspector import inspect_param_groups
from .train import History

__all__ = ["plot_heatmap", "plot_history", "plot_lr_per_layer", "plot_lr_schedule"]


def _axes(ax=None, figsize=(6, 3.5)):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_lr_per_layer(model: nn.Module, optimizer: torch.optim.Optimizer | Sequence[dict[str, Any]], ax=None, log: bool = True):
    """A bar per parameter tensor, input to output, its height the lr it gets (none: a red x).

    Lesson: ``notebooks/05_beyond_the_basics.ipynb``.
    """
    report = inspect_param_groups(model, optimizer)
    ax = _axes(ax, figsize=(max(6, 0.28 * len(report.rows)), 3.5))
    xs = np.arange(len(report.rows))
    lrs = [r.lr if r.lr is not None else np.nan for r in report.rows]
    colors = [f"C{r.groups[0] % 10}" if r.groups else "lightgray" for r in report.rows]
    ax.bar(xs, lrs, color=colors)
    missing = [i for i, r in enumerate(report.rows) if not r.groups]
    if missing:
        ax.plot(missing, [np.nanmin(lrs) if np.isfinite(np.nanmin(lrs)) else 1e-3] * len(missing), "rx", label="in no group")
        ax.legend()
    ax.set_xticks(xs, [r.name for r in report.rows], rotation=90, fontsize=7)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("lr")
    ax.set_title("lr per parameter (colour = param group)")
    return ax


def plot_lr_schedule(history: History, group_names: Sequence[str] | None = None, ax=None, log: bool = True):
    """Each param group's lr at every step of a :func:`~lrdiff_helpers.fit` run."""
    ax = _axes(ax)
    lrs = np.array(history.lrs)
    for g in range(lrs.shape[1]):
        label = group_names[g] if group_names else f"group {g}"
        ax.plot(lrs[:, g], label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("lr")
    ax.legend(fontsize=8)
    return ax


def plot_history(histories: History | Mapping[str, History | Sequence[History]], ax=None, metric: str = "acc"):
    """Training (dashed) and validation (solid) curves per epoch; a list of histories gives a mean and band.

    Args:
        histories: one history, or a mapping from a setting's name to a history or to a list of them
            (one per seed).
        metric: ``"acc"`` or ``"loss"``.
    """
    ax = _axes(ax)
    if isinstance(histories, History):
        histories = {"run": histories}
    for i, (label, hs) in enumerate(histories.items()):
        hs = [hs] if isinstance(hs, History) else list(hs)
        for split, style in (("train", "--"), ("val", "-")):
            curves = np.array([getattr(h, f"{split}_{metric}") for h in hs])
            if curves.size == 0:
                continue
            mean = curves.mean(0)
            epochs = np.arange(1, len(mean) + 1)
            ax.plot(epochs, mean, style, color=f"C{i}", label=f"{label} ({split})")
            if len(hs) > 1:
                ax.fill_between(epochs, curves.min(0), curves.max(0), color=f"C{i}", alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy" if metric == "acc" else "loss")
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_heatmap(values, row_labels: Sequence[Any], col_labels: Sequence[Any], ax=None,
                 xlabel: str = "head lr", ylabel: str = "backbone lr", title: str = "", fmt: str = "{:.1f}"):
    """A heatmap with the value printed in each cell (rows: ``row_labels``, columns: ``col_labels``)."""
    values = np.asarray(values, dtype=float)
    ax = _axes(ax, figsize=(1.1 * len(col_labels) + 2, 0.8 * len(row_labels) + 1.5))
    im = ax.imshow(values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    mid = np.nanmean(values)
    for (r, c), v in np.ndenumerate(values):
        ax.text(c, r, fmt.format(v), ha="center", va="center", color="black" if v > mid else "white", fontsize=8)
    ax.figure.colorbar(im, ax=ax)
    return ax
