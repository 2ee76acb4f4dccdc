"""How the checks speak: quietly (nothing on stderr), and in failure messages that list what was found.

nbgrader scores a test cell 0 when it writes anything to stderr, and torch writes warnings there. So test
cells run students' code inside :func:`quiet`, and nothing in :mod:`lrdiff_helpers.grading` warns.
"""

from __future__ import annotations

import contextlib
import io
import math
import numbers
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["MAX_LISTED", "call", "close", "describe", "fail", "fmt", "fmt_any", "listing", "number", "quiet", "same"]

MAX_LISTED = 6  # failures listed in one message before "... and N more"


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Run a block with warnings ignored and stderr captured (nbgrader scores a cell that writes there 0).

    Yields the buffer that received whatever the block wrote to ``sys.stderr``.

    >>> import warnings
    >>> with quiet() as err:
    ...     warnings.warn("lr too high")
    >>> err.getvalue()
    ''
    """
    buffer = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stderr(buffer):
            yield buffer


def call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` inside :func:`quiet`: how test cells call a student's function."""
    with quiet():
        return func(*args, **kwargs)


def fmt(value: float | None) -> str:
    """A number as failure messages show it (``"none"`` for ``None``)."""
    return "none" if value is None else f"{value:.6g}"


def fmt_any(v: Any) -> str:
    """A number as :func:`fmt` shows it, anything else as its ``repr``."""
    n = number(v)
    return fmt(n) if n is not None else repr(v)


def listing(lines: Sequence[str]) -> str:
    """The first :data:`MAX_LISTED` lines, then ``... and N more``."""
    shown = list(lines[:MAX_LISTED])
    if len(lines) > MAX_LISTED:
        shown.append(f"... and {len(lines) - MAX_LISTED} more")
    return "\n".join(shown)


def fail(lines: Sequence[str]) -> None:
    """Raise an ``AssertionError`` listing ``lines``, if there is any."""
    if lines:
        raise AssertionError(listing(lines))


def number(value: Any) -> float | None:
    """A real number (or a one-element tensor) as a float; ``None`` for anything else."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    return None


def close(a: float, b: float) -> bool:
    """Equal up to float rounding: how expected lrs and weight decays are compared."""
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-15)


def same(have: Any, want: Any) -> bool:
    """Equal option values: numbers up to rounding, sequences item by item, anything else by ``==``."""
    if isinstance(want, (tuple, list)):
        return isinstance(have, (tuple, list)) and len(have) == len(want) and all(
            same(h, w) for h, w in zip(have, want))
    h, w = number(have), number(want)
    if h is None or w is None:
        return have == want
    return math.isclose(h, w, rel_tol=1e-6, abs_tol=1e-12)


def describe(obj: Any) -> str:
    """What an object is, for a message: ``a Linear module``, ``a tensor of shape (3,)``, ``a list of dict``."""
    if obj is None:
        return "None"
    if isinstance(obj, nn.Module):
        return f"a {type(obj).__name__} module"
    if isinstance(obj, torch.Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (list, tuple)):
        inner = f" of {type(obj[0]).__name__}" if obj else ""
        return f"a {type(obj).__name__}{inner}"
    return f"a {type(obj).__name__}"
