"""See what an optimizer will really do to each parameter, and catch the mistakes torch stays silent about.

``inspect_param_groups(model, optimizer_or_groups)`` returns a :class:`GroupReport`: one row per model
parameter (its group, its effective lr and weight decay) and a list of problems:

* ``unassigned``: a trainable parameter in no group (it is silently never trained);
* ``duplicate``: a parameter in two groups (torch raises ``ValueError`` when it builds the optimizer);
* ``empty_group``: a group with no parameters (an exhausted generator, say);
* ``ignored_key``: a group key torch does not read (``learning_rate`` for ``lr``): silently ignored;
* ``not_a_tensor``: a group's ``params`` holds a module or something else that is not a tensor;
* ``foreign``: a tensor in a group that is not a parameter of the model.

Lesson: ``notebooks/02_syntax.ipynb``.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .resolve import LABEL_KEYS, SCHEDULER_KEYS, Finding, Resolution, Slot, resolve  # noqa: F401 (re-exported)

__all__ = ["GroupReport", "ParamRow", "Problem", "inspect_param_groups", "SCHEDULER_KEYS"]


@dataclass(frozen=True)
class Problem:
    kind: str
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


@dataclass(frozen=True)
class ParamRow:
    name: str
    shape: tuple[int, ...]
    requires_grad: bool
    groups: tuple[int, ...]
    lr: float | None
    weight_decay: float | None


@dataclass
class GroupReport:
    """Rows (one per model parameter) and the problems found. ``ok`` is true when there are none."""

    rows: list[ParamRow]
    problems: list[Problem] = field(default_factory=list)
    group_names: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def kinds(self) -> set[str]:
        return {p.kind for p in self.problems}

    def assert_ok(self) -> None:
        """Raise ``ValueError`` listing every problem, if there is any."""
        if self.problems:
            raise ValueError("param groups have problems:\n" + "\n".join(f"  {p}" for p in self.problems))

    def _cells(self) -> list[list[str]]:
        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:g}"

        out = []
        for r in self.rows:
            group = ", ".join(self.group_names[g] for g in r.groups) if r.groups else "NONE"
            out.append(
                [r.name, "x".join(map(str, r.shape)) or "scalar", group, fmt(r.lr), fmt(r.weight_decay),
                 "yes" if r.requires_grad else "no"]
            )
        return out

    _HEAD = ["parameter", "shape", "group", "lr", "weight_decay", "trainable"]

    def __str__(self) -> str:
        cells = [self._HEAD, *self._cells()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self._HEAD))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append("problems: none" if self.ok else "problems:")
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self._HEAD)
        body = []
        for r, cells in zip(self.rows, self._cells()):
            bad = r.requires_grad and len(r.groups) != 1
            style = ' style="background:#fdd"' if bad else ""
            body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        problems = "<p><b>problems:</b> none</p>" if self.ok else (
            "<p><b>problems:</b></p><ul>"
            + "".join(f"<li><code>{html.escape(p.kind)}</code>: {html.escape(p.message)}</li>" for p in self.problems)
            + "</ul>"
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{problems}"


def inspect_param_groups(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | Iterable[dict[str, Any]],
    optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
    defaults: dict[str, Any] | None = None,
) -> GroupReport:
    """Report each parameter's group, lr and weight decay, and flag mistakes.

    The walk is :func:`lrdiff_helpers.resolve.resolve`'s; this function words what it finds.

    Args:
        model: the model being optimized.
        optimizer: a built optimizer, or the list of group dicts you are about to pass to one (then
            mistakes that torch would raise on, or that it would hide, are reported instead).
        optimizer_cls: for a list of dicts, the optimizer class it is meant for (its keys are the valid ones).
        defaults: for a list of dicts, the optimizer's keyword arguments (``{"lr": 0.1}``), which fill in
            keys a group leaves out.

    >>> from lrdiff_helpers import TwoPartModel
    >>> m = TwoPartModel()
    >>> report = inspect_param_groups(m, [{"params": m.part1.parameters(), "learning_rate": 0.1}])
    >>> sorted(report.kinds())
    ['ignored_key', 'unassigned']
    """
    if isinstance(optimizer, torch.optim.Optimizer):
        res = resolve(model, optimizer)
        opt_name = type(optimizer).__name__
    else:
        groups = [dict(g) if isinstance(g, dict) else {"params": g} for g in optimizer]
        res = resolve(model, groups, optimizer_cls, defaults, named=False)
        opt_name = optimizer_cls.__name__
    group_names = [str(g.get("name", gi)) for gi, g in enumerate(res.groups)]
    problems = _group_problems(res, group_names, opt_name)
    rows = []
    for slot in res.slots.values():
        gs = slot.occurrences
        lr, wd = res.setting(slot.name, "lr"), res.setting(slot.name, "weight_decay")
        rows.append(ParamRow(slot.name, slot.shape, slot.requires_grad, gs, lr, wd))
        problems += _param_problems(slot, group_names)
    return GroupReport(rows, problems, group_names)


def _group_problems(res: Resolution, names: list[str], opt_name: str) -> list[Problem]:
    """The problems of each group, group by group: empty, items that are not the model's, ignored keys."""
    ignored = res.ignored_keys()
    problems = []
    for gi, label in enumerate(names):
        found = [f for f in res.findings if f.group == gi]
        if any(f.kind == "params_not_iterable" for f in found):
            raise TypeError(f"'{found[0].detail}' object is not iterable")
        if not res.groups[gi]["params"] and not any(f.kind == "params_module" for f in found):
            problems.append(Problem("empty_group", f"group {label} has no parameters (a used-up generator?)"))
        problems += [p for p in (_item_problem(f, label) for f in found) if p is not None]
        problems += [Problem("ignored_key", f"group {label} has key {key!r}, which {opt_name} ignores")
                     for key in ignored.get(gi, [])]
    return problems


def _item_problem(finding: Finding, label: str) -> Problem | None:
    if finding.module:
        return Problem("not_a_tensor",
                       f"group {label} holds the module {finding.detail}; pass module.parameters() instead")
    if finding.kind == "not_a_tensor":
        return Problem("not_a_tensor", f"group {label} holds a {finding.detail}, not a tensor")
    if finding.kind == "foreign":
        return Problem("foreign", f"group {label} holds a tensor {finding.shape} that is not a parameter of the model")
    return None  # a set is fine here; a parameter listed twice is reported as a duplicate


def _param_problems(slot: Slot, names: list[str]) -> list[Problem]:
    gs = slot.occurrences
    if len(gs) > 1:
        return [Problem(
            "duplicate", f"{slot.name} is in groups {', '.join(names[i] for i in gs)}; a parameter must be in one group"
        )]
    if not gs and slot.requires_grad:
        return [Problem("unassigned", f"{slot.name} is in no param group, so it is never trained; "
                                      "every trainable parameter must be in exactly one")]
    return []
