"""Evaluate a scheme's step numerically, by walking its sympy expressions.

No code is generated or executed: each node (sum, product, power, call) is computed with numpy,
so any array type that supports the arithmetic works (floats, numpy arrays, even torch tensors).
Used by the property tests of the inverse and by the empirical convergence of the order analysis.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import reduce

import numpy as np
import sympy
from sympy.core.function import AppliedUndef

from odenet.errors import UnsupportedSchemeError
from odenet.ir import Scheme, parse_value, value

__all__ = ["evaluate", "next_state", "step"]

_SCALAR = {
    sympy.exp: np.exp,
    sympy.log: np.log,
    sympy.sin: np.sin,
    sympy.cos: np.cos,
    sympy.tanh: np.tanh,
}


def evaluate(expr: sympy.Expr, env: Mapping, functions: Mapping[str, Callable]):
    """The value of ``expr`` with symbols from ``env`` and function symbols from ``functions``."""
    if expr in env:
        return env[expr]
    if expr.is_number:  # any constant: 1/3, sqrt(3)/6, pi, exp(1)
        return float(expr)
    if isinstance(expr, AppliedUndef):
        return functions[expr.func.__name__](*(evaluate(a, env, functions) for a in expr.args))
    args = [evaluate(a, env, functions) for a in expr.args]
    if expr.is_Add:
        return reduce(lambda a, b: a + b, args)
    if expr.is_Mul:
        return reduce(lambda a, b: a * b, args)
    if expr.is_Pow:
        return args[0] ** args[1]
    if expr.func in _SCALAR:
        return _SCALAR[expr.func](args[0])
    if expr.is_Symbol:
        raise KeyError(f"no value for {expr}")
    raise TypeError(f"cannot evaluate {expr.func.__name__}")


def _params(scheme: Scheme, params: Mapping[str, float] | None) -> dict:
    values = {p.symbol: float(p.default) for p in scheme.params}
    for name, v in (params or {}).items():
        values[scheme.param(name).symbol] = v
    return values


def step(scheme: Scheme, old: Mapping, functions: Mapping[str, Callable], params=None) -> dict:
    """One explicit step: ``old`` maps the state vector's symbols to values; returns every value
    computed (stages and new values ``x[n+1]``) together with ``old`` and the parameters."""
    if not scheme.is_explicit:
        raise UnsupportedSchemeError(
            f"scheme {scheme.name} is implicit: its step cannot be evaluated directly"
        )
    env = {**_params(scheme, params), **old}
    for eq in scheme.steps:
        env[eq.target] = evaluate(eq.expr, env, functions)
    return env


def next_state(scheme: Scheme, env: Mapping) -> dict:
    """The state vector one step later, from the values of a step: ``x[n] <- x[n+1]``,
    ``x[n-1] <- x[n]`` and so on (the history shifts)."""
    out = {}
    for symbol in scheme.state_vector:
        state, offset = parse_value(symbol)
        out[symbol] = env[value(state, offset + 1)]
    return out
