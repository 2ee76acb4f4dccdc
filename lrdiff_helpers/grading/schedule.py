"""One-cycle schedules: each group's lr step by step, the facts the grader reads, and the checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .messages import close, describe, fail, fmt, quiet
from .optimizer import qualified_name

__all__ = [
    "ScheduleFacts",
    "check_one_cycle_bound",
    "check_one_cycle_lrs",
    "check_one_cycle_peaks",
    "one_cycle_lrs",
    "reference_one_cycle_lrs",
    "schedule_facts",
]


def one_cycle_lrs(scheduler: Any, optimizer: torch.optim.Optimizer, steps: int) -> list[list[float]]:
    """The lr of every group at steps ``0 .. steps - 1`` (step 0: right after the scheduler is built).

    Steps the optimizer (no gradients, so no parameter moves) and then the scheduler, in torch's order.
    """
    out = []
    with quiet():
        for step in range(steps):
            out.append([float(g["lr"]) for g in optimizer.param_groups])
            if step < steps - 1:
                optimizer.step()
                scheduler.step()
    return out


def reference_one_cycle_lrs(peaks: Sequence[float], total_steps: int) -> list[list[float]]:
    """Per-group lrs of ``OneCycleLR(max_lr=peaks, total_steps=total_steps)`` (defaults otherwise)."""
    params = [nn.Parameter(torch.zeros(1)) for _ in peaks]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, peaks)], lr=1.0, momentum=0.9)
    with quiet():
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=list(peaks), total_steps=total_steps)
    return one_cycle_lrs(sched, opt, total_steps)


_ONE_CYCLE = "torch.optim.lr_scheduler.OneCycleLR"


@dataclass(frozen=True)
class ScheduleFacts:
    """What :func:`check_one_cycle_bound` looks at, as plain data.

    ``lrs[step][group]`` over ``total_steps`` steps (empty when the scheduler is not a ``OneCycleLR`` bound to
    the optimizer); ``runs_past_end``: two more steps did not raise; ``error``: what stepping it raised.
    """

    classes: tuple[str, ...]
    describe: str
    bound: bool
    total_steps: int
    lrs: tuple[tuple[float, ...], ...] = ()
    runs_past_end: bool = False
    error: str | None = None


def schedule_facts(scheduler: Any, optimizer: torch.optim.Optimizer, total_steps: int) -> ScheduleFacts:
    """Record a scheduler's behaviour over ``total_steps`` steps (this steps it, and its optimizer, to the end)."""
    classes = tuple(qualified_name(c) for c in type(scheduler).__mro__)
    bound = getattr(scheduler, "optimizer", None) is optimizer
    facts = ScheduleFacts(classes, describe(scheduler), bound, total_steps)
    if _ONE_CYCLE not in classes or not bound:
        return facts
    try:
        lrs = tuple(tuple(step) for step in one_cycle_lrs(scheduler, optimizer, total_steps))
        with quiet():
            optimizer.step()
            try:
                scheduler.step()  # the total_steps-th step is still allowed; one more is not
                scheduler.step()
                past = True
            except ValueError:
                past = False
    except Exception as err:  # noqa: BLE001 (a student's scheduler may raise anything)
        return ScheduleFacts(classes, facts.describe, bound, total_steps, error=f"{type(err).__name__}: {err}")
    return ScheduleFacts(classes, facts.describe, bound, total_steps, lrs, past)


def check_one_cycle_bound(scheduler: Any, optimizer: Any = None, total_steps: int = 0) -> None:
    """Check that ``scheduler`` is a ``OneCycleLR`` driving ``optimizer`` over ``total_steps`` steps.

    The lr of every group must rise, then fall to its lowest value at the last step, ``total_steps - 1``.
    ``scheduler`` may also be its :class:`ScheduleFacts` (then ``optimizer`` is not needed).
    """
    facts = scheduler if isinstance(scheduler, ScheduleFacts) else schedule_facts(scheduler, optimizer, total_steps)
    total_steps = facts.total_steps
    if _ONE_CYCLE not in facts.classes:
        raise AssertionError(f"expected a torch.optim.lr_scheduler.OneCycleLR; found {facts.describe}")
    if not facts.bound:
        raise AssertionError("the OneCycleLR drives another optimizer, not the one passed in")
    if facts.error is not None or len(facts.lrs) != total_steps:
        raise AssertionError(f"stepping the schedule {total_steps} times failed: {facts.error}")
    lines = []
    for gi in range(len(facts.lrs[0]) if facts.lrs else 0):
        series = [step[gi] for step in facts.lrs]
        low = min(range(total_steps), key=lambda s: (series[s], -s))
        top = max(range(total_steps), key=lambda s: series[s])
        if low != total_steps - 1 or not series[-1] < series[0] < series[top]:
            lines.append(
                f"group {gi}: the lr should rise from step 0, peak, and reach its lowest value at the last "
                f"step ({total_steps - 1}) of {total_steps}; it is lowest at step {low} and highest at step {top}"
            )
    if facts.runs_past_end:
        lines.append(f"the schedule runs past total_steps={total_steps}")
    fail(lines)


def check_one_cycle_peaks(lrs: Sequence[Sequence[float]], peaks: Sequence[float]) -> None:
    """Check that group ``i`` of a recorded schedule peaks at ``peaks[i]`` (its lr before the schedule)."""
    lines = []
    for gi, want in enumerate(peaks):
        have = max(step[gi] for step in lrs)
        if not close(have, want):
            lines.append(f"group {gi} peaks at lr {fmt(have)}, expected {fmt(want)} (its lr before the schedule)")
    fail(lines)


def check_one_cycle_lrs(
    lrs: Sequence[Sequence[float]], peaks: Sequence[float], total_steps: int, at: Sequence[int] | None = None
) -> None:
    """Check a recorded schedule against ``OneCycleLR(max_lr=peaks, total_steps)``, step by step.

    Also checks that the ratio between any two groups' lrs stays that of their peaks.
    """
    ref = reference_one_cycle_lrs(peaks, total_steps)
    steps = range(total_steps) if at is None else at
    lines = []
    for s in steps:
        for gi, want in enumerate(ref[s]):
            have = lrs[s][gi]
            if not close(have, want):
                lines.append(f"step {s}: group {gi} has lr {fmt(have)}, expected {fmt(want)} "
                             f"(OneCycleLR peaking at {fmt(peaks[gi])})")
        for gi in range(1, len(peaks)):
            if lrs[s][0] and not close(lrs[s][gi] / lrs[s][0], peaks[gi] / peaks[0]):
                lines.append(f"step {s}: the ratio of group {gi}'s lr to group 0's is "
                             f"{fmt(lrs[s][gi] / lrs[s][0])}, expected {fmt(peaks[gi] / peaks[0])}")
    fail(lines)
