"""Classical methods written as schemes, from their coefficients: a Runge-Kutta method from its
Butcher tableau, a linear multistep method from its ``alpha`` and ``beta``.

The result is scheme text (parse it with :func:`odenet.parse`), the way a person would write it:

* an explicit Runge-Kutta method as stages ``k1 = f(x[n] + h*(...))`` and one update;
* an implicit one with coupled stages, ``k1 = f(x[n] + h*(a11*k1 + a12*k2 + ...))`` (a stage read
  before or in its own line makes the step implicit), or, with ``stages_as_states=True``, with its
  stage values as states ``K1[n+1] = f(x[n] + h*(a11*K1[n+1] + ...))`` updated before ``x``: the
  same method, its stages carried to the next step (where nothing reads them);
* a ``k``-step method either with history (``x[n-1]``, ..., ``x[n-k+1]``) or with the past values
  carried as states (``x1[n+1] = x[n]``, ``x2[n+1] = x1[n]``, ...), which is the same method.

Coefficients may be exact (integers, fractions, sympy numbers such as ``sqrt(3)/6``) or decimals
(floats are written with the shortest decimal that reads back as the same float).
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import cast

import numpy as np
import sympy

from odenet.ir.printing import format_expr

__all__ = ["multistep_text", "runge_kutta_text"]


def _number(c) -> str:
    """A coefficient as the language reads it: exact numbers as sympy prints them, floats as the
    shortest decimal that reads back as the same float (never in exponent notation)."""
    if isinstance(c, Real) and not isinstance(c, (int, sympy.Basic)):
        c = float(c)
        return str(int(c)) if c.is_integer() else np.format_float_positional(c, unique=True, trim="-")
    return format_expr(sympy.sympify(c))


def _negated(c):
    if isinstance(c, Real) and not isinstance(c, (int, sympy.Basic)):
        return -float(c)
    return -cast(sympy.Expr, sympy.sympify(c))


def _combination(terms: Sequence[tuple[object, str]]) -> str:
    """``c1*t1 + c2*t2 + ...`` without the zero terms; ``0`` when all are zero."""
    parts = []
    for c, term in terms:
        text = _number(c)
        if text in ("0", "-0", "0.0"):
            continue
        parts.append(term if text == "1" else f"({text})*{term}")
    return " + ".join(parts) or "0"


def _doc(doc: str) -> list[str]:
    return [f'"""{doc}"""'] if doc else []


def runge_kutta_text(
    name: str,
    a: Sequence[Sequence],
    b: Sequence,
    doc: str = "",
    h: str = "0.1",
    stages_as_states: bool = False,
) -> str:
    """A Runge-Kutta method (Butcher tableau ``a``, weights ``b``) as scheme text for ``x' = f(x)``."""
    s = len(b)
    explicit = all(_number(a[i][j]) in ("0", "0.0") for i in range(s) for j in range(i, s))
    lines = [f"scheme {name}", *_doc(doc)]
    if not stages_as_states:
        lines += ["state x", f"param h = {h}", "function f"]
        for i in range(s):
            inner = _combination([(a[i][j], f"k{j + 1}") for j in range(i if explicit else s)])
            lines.append(f"k{i + 1} = f(x[n])" if inner == "0" else f"k{i + 1} = f(x[n] + h*({inner}))")
        lines.append(f"x[n+1] = x[n] + h*({_combination([(b[i], f'k{i + 1}') for i in range(s)])})")
        return "\n".join(lines) + "\n"
    stages = [f"K{i + 1}" for i in range(s)]
    lines += [f"state x, {', '.join(stages)}", f"param h = {h}", "function f"]
    for i in range(s):
        inner = _combination([(a[i][j], f"{stages[j]}[n+1]") for j in range(s)])
        rhs = "f(x[n])" if inner == "0" else f"f(x[n] + h*({inner}))"
        lines.append(f"{stages[i]}[n+1] = {rhs}")
    lines.append(f"x[n+1] = x[n] + h*({_combination([(b[i], f'{stages[i]}[n+1]') for i in range(s)])})")
    return "\n".join(lines) + "\n"


def multistep_text(
    name: str, alpha: Sequence, beta: Sequence, carried: bool = False, doc: str = "", h: str = "0.1"
) -> str:
    """A linear ``k``-step method ``sum_j alpha_j x[n+1-k+j] = h sum_j beta_j f(x[n+1-k+j])``
    (``alpha_k`` leading) as scheme text; ``carried`` writes the past values as states."""
    k = len(alpha) - 1
    if carried:
        past = ["x[n]"] + [f"x{j}[n]" for j in range(1, k)]  # past[i] is x[n-i]
        states = ["x"] + [f"x{j}" for j in range(1, k)]
    else:
        past = ["x[n]"] + [f"x[n-{j}]" for j in range(1, k)]
        states = ["x"]
    values = [*past[::-1], "x[n+1]"]  # values[j] is x[n+1-k+j]
    lead = _number(alpha[k])
    scale = "" if lead == "1" else f"(1/({lead}))*"
    history = _combination([(_negated(alpha[j]), values[j]) for j in range(k)])
    calls = _combination([(beta[j], f"f({values[j]})") for j in range(k + 1)])
    lines = [f"scheme {name}", *_doc(doc), f"state {', '.join(states)}", f"param h = {h}", "function f"]
    lines.append(f"x[n+1] = {scale}({history} + h*({calls}))")
    if carried:
        lines += ["x1[n+1] = x[n]"] * (k > 1) + [f"x{j}[n+1] = x{j - 1}[n]" for j in range(2, k)]
    return "\n".join(lines) + "\n"
