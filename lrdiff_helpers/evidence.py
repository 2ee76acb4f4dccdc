"""Evidence for the grader: what a student's functions return, recorded as plain data.

When a submission is graded, each graded test cell of the exercises is replaced by a *probe*
(``autograder/judge.py``): a call of :func:`probe` with the cases to run. The probe calls the student's
function on models it builds from a spec (``"TwoPartModel(3, 7, 4)"``), turns what comes back into plain data
(which parameter is in which group, with which lr, ...; see the ``*Facts`` and ``GroupMap`` types of
:mod:`lrdiff_helpers.grading`) and displays it as one output of MIME type :data:`MIME`. The grader reads that
output and decides, in its own process, with its own copy of torch and of these checks: nothing the student's
code replaces in the notebook's kernel (``torch.allclose``, builtins, the checks, an IPython input transformer)
can change the verdict. Faking the evidence would mean computing the right answer, which is the exercise.

Both sides use this module: the kernel to record (:func:`probe`), the grader to read back (``*_from_json``,
which validate what they read: evidence is untrusted input) and to rebuild the same models (:func:`build_model`).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import grading

if TYPE_CHECKING:  # torch is imported where a model is built: recording a quiz answer never needs it
    import torch
    from torch import nn

    from .grading import GroupMap, GroupShape, OptimizerFacts, ScheduleFacts

__all__ = [
    "MIME",
    "EvidenceError",
    "build_model",
    "build_optimizer",
    "groupmap_from_json",
    "groupmap_to_json",
    "probe",
    "run_case",
    "shape_from_json",
    "optimizer_facts_from_json",
    "schedule_facts_from_json",
    "value_from_json",
]

#: The MIME type of a probe's output in the executed notebook.
MIME = "application/vnd.lrdiff.evidence"
#: Largest evidence the grader reads, in characters.
MAX_EVIDENCE = 1_000_000


class EvidenceError(AssertionError):
    """Evidence that cannot be what the course's probe records: missing, malformed, or for another model."""


# --------------------------------------------------------------------------------------------------
# Models and optimizers from specs (the same on both sides)


def _resnet18(**kwargs: Any) -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(**kwargs)


def _resnet18_groupnorm(**kwargs: Any) -> nn.Module:
    import torchvision
    from torch import nn

    return torchvision.models.resnet18(norm_layer=lambda channels: nn.GroupNorm(4, channels), **kwargs)


def _builders() -> dict[str, Callable[..., nn.Module]]:
    from .models import SmallResNet, TwoPartModel
    from .vit import tiny_vit

    return {
        "TwoPartModel": TwoPartModel,
        "SmallResNet": SmallResNet,
        "resnet18": _resnet18,
        "resnet18_groupnorm": _resnet18_groupnorm,
        "tiny_vit": tiny_vit,
    }


def build_model(spec: str) -> nn.Module:
    """Build a model from a spec such as ``"SmallResNet(num_classes=4, widths=(8, 16, 24, 32))"``.

    The name must be one of ``TwoPartModel``, ``SmallResNet``, ``resnet18``, ``resnet18_groupnorm`` (torchvision's
    resnet18 with ``GroupNorm(4, c)`` layers), ``tiny_vit`` (timm's ViT, ``lrdiff_helpers.vit``) and the arguments
    literals. Seeded, so both sides build the same.

    >>> build_model("TwoPartModel(3, 7, 4)").part1
    Linear(in_features=3, out_features=7, bias=True)
    """
    import torch

    try:
        call = ast.parse(spec, mode="eval").body
    except SyntaxError as err:
        raise ValueError(f"not a model spec: {spec!r}") from err
    builders = _builders()
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id in builders):
        raise ValueError(f"not a model spec: {spec!r} (expected one of {sorted(builders)}(...))")
    args = [ast.literal_eval(a) for a in call.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return builders[call.func.id](*args, **kwargs)


_OPTIMIZERS = ("SGD", "Adam", "AdamW")


def build_optimizer(model: nn.Module, spec: Mapping[str, Any]) -> torch.optim.Optimizer:
    """Build an optimizer over parts of ``model``.

    ``spec``: ``{"class": "SGD", "groups": [{"modules": ["part1"], "lr": 1e-3}, ...], "options": {...}}``; each
    group takes the parameters of its modules (dotted names) and its other keys as they are.

    >>> m = build_model("TwoPartModel()")
    >>> opt = build_optimizer(m, {"class": "SGD", "groups": [{"modules": ["part1"], "lr": 0.1}], "options": {"lr": 1}})
    >>> [g["lr"] for g in opt.param_groups]
    [0.1]
    """
    import torch

    if spec["class"] not in _OPTIMIZERS:
        raise ValueError(f"optimizer {spec['class']!r} is not one of {_OPTIMIZERS}")
    groups = []
    for g in spec["groups"]:
        params = [p for name in g["modules"] for p in model.get_submodule(name).parameters()]
        groups.append({**{k: v for k, v in g.items() if k != "modules"}, "params": params})
    return getattr(torch.optim, spec["class"])(groups, **spec.get("options", {}))


# --------------------------------------------------------------------------------------------------
# Kernel side: run the cases, record plain data


def _value_json(value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(value).__name__, "repr": repr(value)[:200]}
    if isinstance(value, str):
        out["str"] = str(value)[:200]
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        out["real"] = float(value)
    return out


def groupmap_to_json(gm: GroupMap) -> dict[str, Any]:
    return {
        "placements": [
            [pl.name, list(pl.groups), pl.lr, pl.weight_decay, pl.requires_grad, pl.lr_is_default,
             pl.weight_decay_is_default]
            for pl in gm.placements.values()
        ],
        "groups": [
            {**{k: grading.json_scalar(v) for k, v in g.items() if k != "params"}, "params": len(list(g["params"]))}
            for g in gm.groups
        ],
        "problems": [str(p) for p in gm.problems],
        "ignored_keys": {str(i): [str(k) for k in keys] for i, keys in gm.ignored_keys.items()},
        "from_dicts": bool(gm.from_dicts),
    }


def _groupmap_or_error(model: nn.Module, result: Any) -> dict[str, Any]:
    try:
        return groupmap_to_json(grading.effective_groups(model, result))
    except AssertionError as err:
        return {"error": str(err)}


def _facts_json(facts: Any) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(facts)))


def run_case(case: Mapping[str, Any], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Run one case against the names defined in the notebook; return its evidence (plain data)."""
    kind = case["kind"]
    if kind == "value":
        if case["name"] not in namespace:
            return {"error": f"{case['name']} is not defined (did its cell run?)"}
        return {"value": _value_json(namespace[case["name"]])}
    func = namespace.get(case["fn"])
    if func is None:
        return {"error": f"{case['fn']} is not defined (did its cell run?)"}
    model = build_model(case["model"])
    try:
        if kind == "schedule":
            optimizer = build_optimizer(model, case["optimizer"])
            with grading.quiet():
                result = func(optimizer, *case.get("args", ()), **case.get("kwargs", {}))
            return {"facts": _facts_json(grading.schedule_facts(result, optimizer, case["steps"]))}
        with grading.quiet():
            result = func(model, *case.get("args", ()), **case.get("kwargs", {}))
    except Exception as err:  # noqa: BLE001 (the student's function may raise anything)
        return {"error": (f"{type(err).__name__}: {err}" if str(err) else type(err).__name__)[:500]}
    if kind == "optimizer":
        return {"facts": _facts_json(grading.optimizer_facts(result)), "map": _groupmap_or_error(model, result)}
    if kind == "groups":
        return {"shape": _facts_json(grading.group_shape(result)), "map": _groupmap_or_error(model, result)}
    raise ValueError(f"unknown case kind {kind!r}")


def probe(grade_id: str, cases: Sequence[Mapping[str, Any]], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Run the cases of one graded test cell and display the evidence (one output of type :data:`MIME`).

    Returns the evidence too (the course's tests call this outside a kernel).
    """
    evidence = {"grade_id": grade_id, "cases": [run_case(c, namespace) for c in cases]}
    text = json.dumps(evidence)
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover
        return evidence
    if get_ipython() is not None:
        display({MIME: text}, raw=True)
    return evidence


# --------------------------------------------------------------------------------------------------
# Grader side: read evidence back, strictly


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise EvidenceError(f"malformed evidence: {what}")


def _opt_float(v: Any) -> float | None:
    _need(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)), f"not a number: {v!r}")
    return None if v is None else float(v)


def groupmap_from_json(data: Any, model: nn.Module) -> GroupMap:
    """A :class:`GroupMap` from evidence, checked against the grader's own ``model``: it must describe
    exactly that model's parameters (any other set of names means the evidence is not about this model)."""
    if isinstance(data, dict) and "error" in data:
        raise AssertionError(str(data["error"]))
    _need(isinstance(data, dict), "group map is not an object")
    rows, groups = data.get("placements"), data.get("groups")
    _need(isinstance(rows, list) and isinstance(groups, list), "group map without placements or groups")
    names = [n for n, _ in model.named_parameters()]
    requires = {n: p.requires_grad for n, p in model.named_parameters()}
    placements: dict[str, grading.Placement] = {}
    for row in rows:
        _need(isinstance(row, list) and len(row) == 7 and isinstance(row[0], str), "bad placement")
        name, gs, lr, wd, _req, lr_d, wd_d = row
        _need(isinstance(gs, list) and all(isinstance(g, int) and 0 <= g < len(groups) for g in gs), "bad group index")
        _need(name not in placements, f"{name} listed twice")
        placements[name] = grading.Placement(name, tuple(gs), _opt_float(lr), _opt_float(wd),
                                             requires.get(name, True), bool(lr_d), bool(wd_d))
    if sorted(placements) != sorted(names):
        raise EvidenceError("the evidence does not describe the parameters of the model the case builds")
    out_groups = []
    for g in groups:
        _need(isinstance(g, dict) and isinstance(g.get("params"), int) and g["params"] >= 0, "bad group")
        out_groups.append({**g, "params": [None] * g["params"]})
    problems = data.get("problems", [])
    ignored = data.get("ignored_keys", {})
    _need(isinstance(problems, list) and all(isinstance(p, str) for p in problems), "bad problems")
    _need(isinstance(ignored, dict), "bad ignored keys")
    ignored_keys = {int(k): [str(x) for x in v] for k, v in ignored.items() if str(k).isdigit() and isinstance(v, list)}
    ordered = {n: placements[n] for n in names}
    return grading.GroupMap(ordered, out_groups, problems, ignored_keys, bool(data.get("from_dicts", True)))


def _str_tuple(v: Any) -> tuple[str, ...]:
    _need(isinstance(v, list) and all(isinstance(x, str) for x in v), "bad class list")
    return tuple(v)


def shape_from_json(data: Any) -> GroupShape:
    _need(isinstance(data, dict), "shape is not an object")
    items = data.get("items", [])
    _need(isinstance(items, list) and all(i is None or isinstance(i, str) for i in items), "bad items")
    return grading.GroupShape(str(data.get("describe")), data.get("is_sequence") is True, tuple(items))


def optimizer_facts_from_json(data: Any) -> OptimizerFacts:
    _need(isinstance(data, dict), "facts are not an object")
    groups = data.get("groups", [])
    _need(isinstance(groups, list) and all(isinstance(g, dict) for g in groups), "bad groups")
    return grading.OptimizerFacts(_str_tuple(data.get("classes")), str(data.get("describe")), tuple(groups))


def schedule_facts_from_json(data: Any) -> ScheduleFacts:
    _need(isinstance(data, dict), "facts are not an object")
    lrs = data.get("lrs", [])
    _need(isinstance(lrs, list) and all(isinstance(s, list) for s in lrs), "bad lrs")
    rows = tuple(tuple(_opt_float(x) or 0.0 for x in s) for s in lrs)
    _need(len({len(r) for r in rows}) <= 1, "ragged lrs")
    steps = data.get("total_steps")
    _need(isinstance(steps, int), "bad total_steps")
    error = data.get("error")
    return grading.ScheduleFacts(_str_tuple(data.get("classes")), str(data.get("describe")),
                                 data.get("bound") is True, steps, rows, data.get("runs_past_end") is True,
                                 None if error is None else str(error))


class Shown:
    """A value the grader could not rebuild (not a string or a number): shown by its repr in messages."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def value_from_json(data: Any) -> Any:
    """The student's value as the grader sees it: a ``str``, a ``float``, or a :class:`Shown` placeholder."""
    _need(isinstance(data, dict), "value is not an object")
    if isinstance(data.get("str"), str):
        return data["str"]
    real = data.get("real")
    if isinstance(real, (int, float)) and not isinstance(real, bool):
        return float(real)
    return Shown(str(data.get("repr", "?"))[:200])
