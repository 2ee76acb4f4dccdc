"""Students must write the param-group builders themselves: which of the helpers' builders a function uses."""

from __future__ import annotations

import ast
from collections.abc import Iterable

__all__ = ["FORBIDDEN_BUILDERS", "builders_used"]

#: The param-group builders of ``lrdiff_helpers`` that the exercises ask students to write themselves.
FORBIDDEN_BUILDERS = frozenset(
    {
        "apply_lr_scale",
        "backbone_head_groups",
        "layerwise_param_groups",
        "llrd_param_groups",
        "lr_range",
        "no_decay_ids",
        "param_groups_by_module",
        "slice_param_groups",
        "stage_param_groups",
        "ulmfit_lrs",
        "weight_decay_param_groups",
    }
)


def builders_used(sources: Iterable[str], fn: str) -> list[str]:
    """The helpers' param-group builders that the last ``def fn`` in ``sources`` refers to (by name, by an
    attribute, or through an alias imported in the notebook), read from the code, not from the kernel."""
    aliases: dict[str, str] = {}
    target = None
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue  # IPython magics and the like: not Python; the kernel reported them
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lrdiff_helpers"):
                for a in node.names:
                    if a.name in FORBIDDEN_BUILDERS:
                        aliases[a.asname or a.name] = a.name
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == fn:
                target = node
    if target is None:
        return []
    used = set()
    for node in ast.walk(target):
        if isinstance(node, ast.Name) and node.id in aliases:
            used.add(aliases[node.id])
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_BUILDERS and node.id != fn:
            used.add(node.id)
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_BUILDERS:
            used.add(node.attr)
    return sorted(used)
