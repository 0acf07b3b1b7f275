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


# The coefficients users write: rationals, the step, a learnable parameter, and transcendental
# functions of parameters and of h (friction factors, exponential integrators, rotations).
USER_COEFFICIENTS = [
    "1",
    "2",
    "1/2",
    "-1/2",
    "3/4",
    "gamma",
    "(1 - gamma)",
    "exp(-mu*h)",
    "exp(gamma)/3",
    "sqrt(gamma)",
    "cos(h)",
    "sin(mu)",
]


@st.composite
def user_scheme_text(draw):
    """A scheme in the shapes users write: stages, look-ahead evaluations (``f(x[n] +
    gamma*v[n])``), one or two functions, history, and coefficients with exp, sqrt, sin and cos of
    parameters and of ``h``. Whether it has an explicit inverse, a fixed-point one or none follows
    from what is drawn; the tests enrol it in whatever modes compile accepts."""
    states = draw(st.sampled_from([["x"], ["x", "v"], ["a", "b", "c"]]))
    lag = {s: draw(st.integers(0, 1)) for s in states}
    functions = ["f", "g"][: draw(st.integers(1, 2))]
    lines = [
        "scheme drawn",
        f"state {', '.join(states)}",
        f"input {', '.join(states)}",
        "param h = 1/4",
        "param gamma = 4/5 learnable in (0, 1)",
        "param mu = 1/2",
    ]
    known = [f"{s}[n]" for s in states] + [f"{s}[n-1]" for s in states if lag[s]]

    def coefficient():
        return draw(st.sampled_from(USER_COEFFICIENTS))

    def point():  # where a function is evaluated: a value, or a look-ahead combination of two
        base = draw(st.sampled_from(known))
        if draw(st.booleans()):
            return f"{base} + {coefficient()}*{draw(st.sampled_from(known))}"
        return base

    def evaluation():
        return f"{draw(st.sampled_from(functions))}({point()})"

    unused = []
    for i in range(draw(st.integers(0, 2))):
        name = f"k{i}"
        if draw(st.booleans()):
            lines.append(f"{name} = {evaluation()}")
        else:
            lines.append(f"{name} = {draw(st.sampled_from(known))} + {coefficient()}*h*{evaluation()}")
        known.append(name)
        unused.append(name)
    for i, s in enumerate(states):
        oldest = f"{s}[n-1]" if lag[s] else f"{s}[n]"
        # the value the update replaces keeps a coefficient of at least 1/2 (a smaller one, written
        # or by cancellation, makes the inverse divide by it: no contraction to solve for)
        terms = [f"{draw(st.sampled_from(USER_COEFFICIENTS[:5] + USER_COEFFICIENTS[7:11]))}*{oldest}"]
        others = [k for k in known if k != oldest]
        for _ in range(draw(st.integers(0, 1)) if others else 0):
            terms.append(f"{coefficient()}*{draw(st.sampled_from(others))}")
        evaluations = []  # distinct: two equal calls with opposite coefficients would cancel
        for _ in range(draw(st.integers(1, 2))):
            candidate = evaluation()
            if candidate not in evaluations:
                evaluations.append(candidate)
        terms += [f"{coefficient()}*h*{e}" for e in evaluations]
        if i == len(states) - 1:  # every stage is read
            terms += [f"h*{name}" for name in unused if not any(name in t for t in terms)]
        lines.append(f"{s}[n+1] = {' + '.join(terms)}")
        known.append(f"{s}[n+1]")
    return "\n".join(lines)
