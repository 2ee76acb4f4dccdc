"""Pictures of the course: lr per layer, lr schedules per group, training curves, lr sweeps.

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

__all__ = ["plot_history", "plot_lr_per_layer", "plot_lr_schedule", "plot_sweep"]


def _axes(ax=None, figsize=(6, 3.5)):
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_lr_per_layer(model: nn.Module, optimizer: torch.optim.Optimizer | Sequence[dict[str, Any]], ax=None, log: bool = True):
    """A bar per parameter tensor, input to output, its height the lr it gets (none: a red x).

    Lesson: ``notebooks/05_schedules_and_decay.ipynb``.
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


def plot_sweep(sweeps: Mapping[str, Mapping[float, Sequence[float]]], ax=None, xlabel: str = "head lr",
               ylabel: str = "validation accuracy %"):
    """One line per sweep: for each lr (x, log scale), the mean over seeds, with a band from min to max.

    ``sweeps[name][lr]`` is the list of values (one per seed) measured at ``lr``. Used by lesson 4's
    robustness plot (accuracy against the head's lr: one lr for all against a fixed backbone/head ratio).
    """
    ax = _axes(ax)
    for name, points in sweeps.items():
        lrs = sorted(points)
        values = [np.asarray(points[lr], dtype=float) for lr in lrs]
        line, = ax.plot(lrs, [v.mean() for v in values], marker="o", label=name)
        ax.fill_between(lrs, [v.min() for v in values], [v.max() for v in values], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax
