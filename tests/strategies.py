"""Hypothesis strategies shared by the tests: random valid schemes."""

from __future__ import annotations

import sympy
from hypothesis import strategies as st

from odenet.ir import Equation, FunctionSymbol, Param, Scheme, value

__all__ = ["random_scheme"]


@st.composite
def random_scheme(draw):
    states = draw(st.lists(st.sampled_from(["x", "y", "v", "F", "z2"]), min_size=1, max_size=3, unique=True))
    param_names = draw(st.lists(st.sampled_from(["h", "gamma", "k", "alpha"]), max_size=3, unique=True))
    params = []
    for name in param_names:
        default = draw(st.fractions(min_value=-5, max_value=5, max_denominator=20))
        learnable = draw(st.booleans())
        interval = None
        if learnable and draw(st.booleans()):
            interval = (sympy.Rational(default) - 1, sympy.oo)
        params.append(Param(name, sympy.Rational(default), learnable, interval))
    param_symbols = [p.symbol for p in params]
    f, g = sympy.Function("f"), sympy.Function("g")
    depth = {s: draw(st.integers(0, 2)) for s in states}

    def expression(known):
        leaves = st.sampled_from(known + param_symbols + [sympy.Integer(2), sympy.Rational(1, 3)])

        def extend(children):
            return st.one_of(
                st.tuples(children, children).map(lambda ab: ab[0] + ab[1]),
                st.tuples(children, children).map(lambda ab: ab[0] * ab[1]),
                st.tuples(children, children).map(lambda ab: ab[0] - ab[1]),
                children.map(lambda a: f(a)),
                children.map(lambda a: g(a)),
                children.map(lambda a: a / 2),
                children.map(lambda a: a**2),
            )

        return draw(st.recursive(leaves, extend, max_leaves=6))

    known = [value(s, -lag) for s in states for lag in range(depth[s] + 1)]
    steps = []
    for i in range(draw(st.integers(0, 2))):
        stage = sympy.Symbol(f"k{i}")
        steps.append(Equation(stage, expression(known)))
        known.append(stage)
    for s in states:
        expr = expression(known) + value(s, -depth[s])  # make sure the history is read
        steps.append(Equation(value(s, 1), expr))
        known.append(value(s, 1))
    used = {c.func.__name__ for eq in steps for c in eq.expr.atoms(sympy.core.function.AppliedUndef)}
    return Scheme(
        name="random",
        states=tuple(states),
        params=tuple(params),
        functions=tuple(FunctionSymbol(n) for n in sorted(used)),
        steps=tuple(steps),
        inputs=tuple(states[: draw(st.integers(1, len(states)))]),
    )
