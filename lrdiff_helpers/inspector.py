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

__all__ = ["GroupReport", "ParamRow", "Problem", "inspect_param_groups", "SCHEDULER_KEYS"]

#: Keys that lr schedulers add to param groups; they are read by the scheduler, not ignored.
SCHEDULER_KEYS = frozenset(
    {"initial_lr", "max_lr", "min_lr", "base_momentum", "max_momentum", "swa_lr", "initial_momentum"}
)
#: Keys that torch keeps in a group for reference (labels).
LABEL_KEYS = frozenset({"params", "param_names", "name"})


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


def _defaults_of(optimizer_cls: type[torch.optim.Optimizer]) -> dict[str, Any]:
    return dict(optimizer_cls([nn.Parameter(torch.zeros(1))]).defaults)


def inspect_param_groups(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | Iterable[dict[str, Any]],
    optimizer_cls: type[torch.optim.Optimizer] = torch.optim.SGD,
    defaults: dict[str, Any] | None = None,
) -> GroupReport:
    """Report each parameter's group, lr and weight decay, and flag mistakes.

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
        groups = optimizer.param_groups
        valid = set(optimizer.defaults)
        fill: dict[str, Any] = {}
        opt_name = type(optimizer).__name__
    else:
        groups = [dict(g) if isinstance(g, dict) else {"params": g} for g in optimizer]
        valid = set(_defaults_of(optimizer_cls))
        fill = dict(_defaults_of(optimizer_cls), **(defaults or {}))
        opt_name = optimizer_cls.__name__
    valid |= SCHEDULER_KEYS | LABEL_KEYS

    problems: list[Problem] = []
    names = {id(p): n for n, p in model.named_parameters()}
    where: dict[int, list[int]] = {}
    group_names = []
    for gi, group in enumerate(groups):
        label = str(group.get("name", gi))
        group_names.append(label)
        params = group.get("params", [])
        if isinstance(params, (torch.Tensor, nn.Module)):
            params = [params]
        else:
            params = list(params)  # consumes a generator in a list of dicts, as torch would
        if not params:
            problems.append(Problem("empty_group", f"group {label} has no parameters (a used-up generator?)"))
        for p in params:
            if isinstance(p, nn.Module):
                problems.append(Problem(
                    "not_a_tensor",
                    f"group {label} holds the module {type(p).__name__}; pass module.parameters() instead",
                ))
            elif not isinstance(p, torch.Tensor):
                problems.append(Problem("not_a_tensor", f"group {label} holds a {type(p).__name__}, not a tensor"))
            elif id(p) not in names:
                problems.append(Problem("foreign", f"group {label} holds a tensor {tuple(p.shape)} that is not a parameter of the model"))
            else:
                where.setdefault(id(p), []).append(gi)
        for key in group:
            if key not in valid:
                problems.append(Problem(
                    "ignored_key",
                    f"group {label} has key {key!r}, which {opt_name} ignores",
                ))

    rows = []
    for name, p in model.named_parameters():
        gs = tuple(where.get(id(p), ()))
        if gs:
            g = groups[gs[0]]
            lr, wd = g.get("lr", fill.get("lr")), g.get("weight_decay", fill.get("weight_decay"))
        else:
            lr = wd = None
        rows.append(ParamRow(name, tuple(p.shape), p.requires_grad, gs, lr, wd))
        if len(gs) > 1:
            problems.append(Problem(
                "duplicate", f"{name} is in groups {', '.join(group_names[i] for i in gs)}; a parameter must be in one group"
            ))
        elif not gs and p.requires_grad:
            problems.append(Problem(
                "unassigned", f"{name} is in no param group, so it is never trained; every trainable parameter must be in exactly one"
            ))
    return GroupReport(rows, problems, group_names)
