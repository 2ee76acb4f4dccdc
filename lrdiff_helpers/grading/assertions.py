"""lr and weight decay checks: each parameter's effective value against the expected one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from .groupmap import GroupMap, Placement, as_groupmap
from .messages import close, fail, fmt

__all__ = ["assert_lrs", "assert_weight_decays", "expected_pairs"]


def expected_pairs(expected: Mapping[str, Any]) -> dict[str, tuple[float, str]]:
    """``expected`` as name -> (value, label): a bare value gets the label ``""``."""
    out = {}
    for name, v in expected.items():
        if isinstance(v, tuple):
            out[name] = (float(v[0]), str(v[1]))
        else:
            out[name] = (float(v), "")
    return out


def assert_lrs(model: nn.Module, groups: Any, expected: Mapping[str, Any]) -> None:
    """Check each parameter's effective lr against ``expected`` (name -> lr, or name -> (lr, label)).

    >>> from lrdiff_helpers import TwoPartModel
    >>> m = TwoPartModel()
    >>> groups = [{"params": m.part1.parameters(), "lr": 1e-2}, {"params": m.part2.parameters(), "lr": 1e-3}]
    >>> assert_lrs(m, groups, {"part1.weight": (1e-3, "part1_lr")})
    Traceback (most recent call last):
    ...
    AssertionError: part1.weight has lr 0.01, expected 0.001 (part1_lr)
    """
    _assert_values(model, groups, expected, "lr")


def assert_weight_decays(model: nn.Module, groups: Any, expected: Mapping[str, Any]) -> None:
    """Check each parameter's effective weight decay against ``expected`` (like :func:`assert_lrs`)."""
    _assert_values(model, groups, expected, "weight_decay")


def _assert_values(model: nn.Module, groups: Any, expected: Mapping[str, Any], key: str) -> None:
    gm = as_groupmap(model, groups)
    lines = []
    for name, (want, label) in expected_pairs(expected).items():
        line = _mismatch(gm, name, key, want, f" ({label})" if label else "")
        if line:
            lines.append(line)
    fail(lines)


def _mismatch(gm: GroupMap, name: str, key: str, want: float, why: str) -> str | None:
    """What is wrong with parameter ``name``'s value of ``key``, or ``None`` when it is ``want``."""
    word = "lr" if key == "lr" else "weight decay"
    pl: Placement | None = gm.placements.get(name)
    if pl is None:
        return f"{name} is not a parameter of the model"
    if not pl.groups:
        return f"{name} is in no param group, so it is never trained; expected {word} {fmt(want)}{why}"
    have = pl.lr if key == "lr" else pl.weight_decay
    is_default = pl.lr_is_default if key == "lr" else pl.weight_decay_is_default
    if is_default:
        return (
            f"{name}: its group {pl.groups[0]} has no {key!r} key, so it would take the optimizer's "
            f"default {word}{gm.key_hint(pl.groups[0])}; expected {word} {fmt(want)}{why}"
        )
    if have is None:
        return f"{name}: its group {pl.groups[0]} has no numeric {key!r}; expected {fmt(want)}{why}"
    if not close(have, want):
        return f"{name} has {word} {fmt(have)}, expected {fmt(want)}{why}"
    return None
