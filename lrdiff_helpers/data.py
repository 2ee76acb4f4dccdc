"""Offline, real data for the course: scikit-learn's bundled 8x8 handwritten digits.

The transfer task (introduced in ``notebooks/04_experiment.ipynb``):

* **source task**: half of the images of every digit, clean. A backbone is pretrained on it
  (``scripts/pretrain_backbone.py``).
* **target task**: the other half, *shifted* by fixed additive pixel noise, with only a few labelled
  training images per class. The rest of the target half is the validation set.

Everything is deterministic: the source/target split never changes, the noise of each target image is
fixed, and ``seed`` only chooses which few target images are labelled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

__all__ = [
    "DIGITS_SHA256",
    "Split",
    "load_digits",
    "source_task",
    "target_task",
]

#: sha256 of the raw digits (uint8 pixels 0..16, then int64 labels) as scikit-learn ships them.
DIGITS_SHA256 = "65e5b4619795efb40c1082f4c350c049e4ad552200d369b6ae99e21eef5e72c5"

_SPLIT_SEED = 0  # fixes which images are "source" and which are "target"; never change it
_NOISE_SEED = 1234  # fixes the noise of each target image


@dataclass(frozen=True)
class Split:
    """Images ``x`` (N, 1, 8, 8), normalized float32, and labels ``y`` (N,), int64."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> "Split":
        return Split(self.x.to(device), self.y.to(device))


class DataChecksumError(RuntimeError):
    """The bundled digits are not the bytes this course was built on."""


@lru_cache(maxsize=1)
def _raw_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits as _sk_load_digits  # reads a file inside sklearn: no download

    bunch = _sk_load_digits()
    pixels = bunch.images.astype(np.uint8)  # values 0..16
    labels = bunch.target.astype(np.int64)
    digest = hashlib.sha256(pixels.tobytes() + labels.tobytes()).hexdigest()
    if digest != DIGITS_SHA256:
        raise DataChecksumError(
            f"scikit-learn's digits have sha256 {digest}, expected {DIGITS_SHA256}; "
            "the course's numbers were measured on the expected bytes."
        )
    return pixels, labels


def load_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1797 digits as float images in [0, 1] of shape (N, 1, 8, 8) and int64 labels.

    >>> x, y = load_digits()
    >>> tuple(x.shape), int(y.max())
    ((1797, 1, 8, 8), 9)
    """
    pixels, labels = _raw_digits()
    x = torch.from_numpy(pixels).float().div_(16.0).unsqueeze(1)
    return x, torch.from_numpy(labels.copy())


@lru_cache(maxsize=1)
def _source_target_indices() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, stratified half/half split of every class into source and target."""
    _, y = load_digits()
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    source, target = [], []
    for c in range(10):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        half = len(idx) // 2
        source.append(idx[:half])
        target.append(idx[half:])
    return torch.cat(source).sort().values, torch.cat(target).sort().values


@lru_cache(maxsize=1)
def _normalization() -> tuple[float, float]:
    x, _ = load_digits()
    src, _ = _source_target_indices()
    return float(x[src].mean()), float(x[src].std())


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean, std = _normalization()
    return (x - mean) / std


def source_task(val_fraction: float = 0.2) -> tuple[Split, Split]:
    """The pretraining task: clean source digits, split into train and validation (fixed split).

    >>> train, val = source_task()
    >>> len(train) + len(val)
    896
    """
    x, y = load_digits()
    src, _ = _source_target_indices()
    g = torch.Generator().manual_seed(_SPLIT_SEED + 1)
    src = src[torch.randperm(len(src), generator=g)]
    n_val = int(round(len(src) * val_fraction))
    val_idx, train_idx = src[:n_val], src[n_val:]
    xs = _normalize(x)
    return Split(xs[train_idx], y[train_idx]), Split(xs[val_idx], y[val_idx])


def target_task(shots: int = 5, noise: float = 0.4, seed: int = 0) -> tuple[Split, Split]:
    """The fine-tuning task: noisy target digits, ``shots`` labelled images per class for training.

    Args:
        shots: labelled training images per class (10 classes, so ``10 * shots`` in all).
        noise: standard deviation of the fixed additive pixel noise (pixels are in [0, 1]).
        seed: chooses which target images are labelled; the rest form the validation set.

    >>> train, val = target_task(shots=5, seed=0)
    >>> len(train), len(val)
    (50, 851)
    """
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    x, y = load_digits()
    _, tgt = _source_target_indices()
    g_noise = torch.Generator().manual_seed(_NOISE_SEED)
    x_tgt = x[tgt] + noise * torch.randn(x[tgt].shape, generator=g_noise)
    y_tgt = y[tgt]
    g = torch.Generator().manual_seed(seed)
    train_mask = torch.zeros(len(tgt), dtype=torch.bool)
    for c in range(10):
        idx = torch.nonzero(y_tgt == c).flatten()
        if shots >= len(idx):
            raise ValueError(f"shots={shots} leaves no validation images of class {c}")
        train_mask[idx[torch.randperm(len(idx), generator=g)[:shots]]] = True
    xs = _normalize(x_tgt)
    return Split(xs[train_mask], y_tgt[train_mask]), Split(xs[~train_mask], y_tgt[~train_mask])
