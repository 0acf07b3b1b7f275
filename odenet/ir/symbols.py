"""The vocabulary of the IR: names, values of states at time steps, calls of function symbols.

Values of a state at a time step are sympy symbols named as written, ``x[n]``, ``x[n-1]``,
``x[n+1]`` (:func:`value`, :func:`parse_value`); sub-networks are undefined sympy functions
``f(...)`` (:func:`function_calls`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

import sympy

from odenet.errors import SchemeValueError

__all__ = [
    "MAX_LAG",
    "RESERVED_NAMES",
    "SCALAR_FUNCTIONS",
    "check_name",
    "function_calls",
    "history_depths",
    "parse_value",
    "split_value",
    "value",
]

MAX_LAG = 16  # x[n-16] is the oldest value a scheme may use

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_VALUE = re.compile(r"(?P<state>[A-Za-z][A-Za-z0-9_]*)\[n(?P<offset>[+-][0-9]+)?\]\Z")


def _sigmoid(x: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-x))


# Scalar functions a scheme may apply to parameters and numbers (never to states: a nonlinearity of
# the state belongs in a function symbol, which becomes a sub-network).
SCALAR_FUNCTIONS: Mapping[str, object] = {
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tanh": sympy.tanh,
    "sigmoid": _sigmoid,
}

_KEYWORDS = ("scheme", "state", "param", "step", "function", "input", "output", "init", "learnable", "in")
_PYTHON_KEYWORDS = (
    "False None True and as assert async await break class continue def del elif else except "
    "finally for from global if import is lambda nonlocal not or pass raise return try while with "
    "yield"
).split()
# Names a user may not give to a state, parameter, function or stage: the language's keywords, the
# step index n, the scalar functions, the constants `inf` and `pi`, the symbols of the analysis
# (lambda, zeta) and Python's keywords (generated code uses the scheme's names).
RESERVED_NAMES = frozenset((*_KEYWORDS, "n", "inf", "pi", "zeta", *SCALAR_FUNCTIONS, *_PYTHON_KEYWORDS))


@functools.cache
def value(state: str, offset: int = 0) -> sympy.Symbol:
    """The symbol of ``state`` at step ``n + offset``: ``value("y", -1)`` is ``y[n-1]``."""
    suffix = "" if offset == 0 else f"{offset:+d}"
    return sympy.Symbol(f"{state}[n{suffix}]")


def parse_value(symbol: sympy.Basic) -> tuple[str, int] | None:
    """``(state, offset)`` for a symbol made by :func:`value`, else ``None``."""
    if not isinstance(symbol, sympy.Symbol):
        return None
    match = _VALUE.match(symbol.name)
    if match is None:
        return None
    return match["state"], int(match["offset"] or 0)


def split_value(symbol: sympy.Basic) -> tuple[str, int]:
    """``(state, offset)`` of a symbol known to be a value (``x[n-1]``); ValueError otherwise."""
    parsed = parse_value(symbol)
    if parsed is None:
        raise ValueError(f"{symbol} is not the value of a state at a step")
    return parsed


def check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise SchemeValueError(f"{what} name {name!r} is not an identifier")
    if name in RESERVED_NAMES:
        raise SchemeValueError(f"{what} name {name!r} is reserved")


def history_depths(states, steps) -> dict[str, int]:
    """For each state, the oldest lag the equations ``steps`` read (``x[n-2]`` gives 2)."""
    depth = {s: 0 for s in states}
    for eq in steps:
        for symbol in eq.expr.free_symbols:
            parsed = parse_value(symbol)
            if parsed and parsed[1] < 0:
                depth[parsed[0]] = max(depth[parsed[0]], -parsed[1])
    return depth


def function_calls(expr: sympy.Basic) -> list[sympy.Expr]:
    """Calls of function symbols in ``expr`` (undefined sympy functions), each once, in a stable
    order: inner calls before the calls that contain them."""
    calls = []
    for node in sympy.postorder_traversal(expr):
        if isinstance(node, sympy.core.function.AppliedUndef) and node not in calls:
            calls.append(node)
    return calls
