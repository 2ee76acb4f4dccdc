"""Offline, real data for the course: scikit-learn's bundled 8x8 handwritten digits.

The transfer task (introduced in ``notebooks/04_experiment.ipynb``):

* **source task**: half of the images of every digit, clean. A backbone is pretrained on it
  (``scripts/pretrain_backbone.py``).
* **target task**: the other half, *shifted* by fixed additive pixel noise, with only a few labelled
  training images per class. A fixed 40% of every class is the held-out **test** split
  (:func:`target_splits`); the rest of the target half is the validation set.

Everything is deterministic: the source/target and test splits never change, the noise of each target
image is fixed, and ``seed`` only chooses which few target images are labelled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch

__all__ = [
    "DIGITS_SHA256",
    "Split",
    "TEST_FRACTION",
    "TargetSplits",
    "load_digits",
    "source_task",
    "target_splits",
    "target_task",
]

#: sha256 of the raw digits (uint8 pixels 0..16, then int64 labels) as scikit-learn ships them.
DIGITS_SHA256 = "65e5b4619795efb40c1082f4c350c049e4ad552200d369b6ae99e21eef5e72c5"

_SPLIT_SEED = 0  # fixes which images are "source" and which are "target"; never change it
_NOISE_SEED = 1234  # fixes the noise of each target image
_TEST_SEED = 2  # fixes which target images are the held-out test split
DIGITS = tuple(range(10))  # every class


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


def source_task(val_fraction: float = 0.2, digits: tuple[int, ...] = DIGITS) -> tuple[Split, Split]:
    """The pretraining task: clean source digits, split into train and validation (fixed split).

    Args:
        val_fraction: share of the source images held out for validation.
        digits: the classes to keep (lesson 4's counterexample pretrains on 0-4 only).

    >>> train, val = source_task()
    >>> len(train) + len(val)
    896
    """
    x, y = load_digits()
    src, _ = _source_target_indices()
    src = src[torch.isin(y[src], torch.tensor(digits))]
    g = torch.Generator().manual_seed(_SPLIT_SEED + 1)
    src = src[torch.randperm(len(src), generator=g)]
    n_val = int(round(len(src) * val_fraction))
    val_idx, train_idx = src[:n_val], src[n_val:]
    xs = _normalize(x)
    return Split(xs[train_idx], y[train_idx]), Split(xs[val_idx], y[val_idx])


#: Share of every class of the target half held out as the **test** split (lesson 4, the graded experiment).
TEST_FRACTION = 0.4


class TargetSplits(NamedTuple):
    """The target task's three splits: train on ``train``, choose on ``val``, report on ``test``."""

    train: Split
    val: Split
    test: Split


def _target(shots: int, noise: float, seed: int, test_fraction: float, digits: tuple[int, ...]) -> TargetSplits:
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    x, y = load_digits()
    _, tgt = _source_target_indices()
    g_noise = torch.Generator().manual_seed(_NOISE_SEED)
    x_tgt = x[tgt] + noise * torch.randn(x[tgt].shape, generator=g_noise)
    y_tgt = y[tgt]
    g_test = torch.Generator().manual_seed(_TEST_SEED)  # the test split never depends on ``seed``
    g = torch.Generator().manual_seed(seed)
    train_mask = torch.zeros(len(tgt), dtype=torch.bool)
    test_mask = torch.zeros(len(tgt), dtype=torch.bool)
    for c in digits:
        idx = torch.nonzero(y_tgt == c).flatten()
        n_test = int(round(len(idx) * test_fraction))
        if n_test:
            perm = torch.randperm(len(idx), generator=g_test)
            test_mask[idx[perm[:n_test]]] = True
            idx = idx[perm[n_test:]].sort().values
        if shots >= len(idx):
            raise ValueError(f"shots={shots} leaves no validation images of class {c}")
        train_mask[idx[torch.randperm(len(idx), generator=g)[:shots]]] = True
    xs = _normalize(x_tgt)
    val_mask = torch.isin(y_tgt, torch.tensor(digits)) & ~(train_mask | test_mask)
    return TargetSplits(*(Split(xs[m], y_tgt[m]) for m in (train_mask, val_mask, test_mask)))


def target_splits(shots: int = 5, noise: float = 0.4, seed: int = 0, test_fraction: float = TEST_FRACTION,
                  digits: tuple[int, ...] = DIGITS) -> TargetSplits:
    """The fine-tuning task in three splits: few-shot ``train``, ``val`` to choose on, held-out ``test``.

    The test split (``test_fraction`` of every class) is fixed: the same images whatever ``seed``, so every
    setting and every seed is reported on it. ``seed`` chooses which of the other images are labelled
    (``train``); the rest are ``val``. ``digits`` keeps only those classes (labels unchanged).
    Introduced in ``notebooks/04_experiment.ipynb``.

    >>> train, val, test = target_splits(shots=5, seed=0)
    >>> len(train), len(val), len(test)
    (50, 491, 360)
    >>> torch.equal(test.y, target_splits(shots=5, seed=1).test.y)
    True
    """
    return _target(shots, noise, seed, test_fraction, tuple(digits))


def target_task(shots: int = 5, noise: float = 0.4, seed: int = 0) -> tuple[Split, Split]:
    """The fine-tuning task in two splits (no test split): ``shots`` labelled images per class, the rest val.

    Lessons 1 and 5 use it for demonstrations; a comparison that reports a result uses
    :func:`target_splits`.

    Args:
        shots: labelled training images per class (10 classes, so ``10 * shots`` in all).
        noise: standard deviation of the fixed additive pixel noise (pixels are in [0, 1]).
        seed: chooses which target images are labelled; the rest form the validation set.

    >>> train, val = target_task(shots=5, seed=0)
    >>> len(train), len(val)
    (50, 851)
    """
    train, val, _ = _target(shots, noise, seed, 0.0, DIGITS)
    return train, val
