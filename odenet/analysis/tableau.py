"""A one-state scheme read back as a Runge-Kutta tableau ``(A, b)``, whatever its spelling.

Each point where the step evaluates ``f`` is a stage ``K_i = f(x[n] + h*sum_j a_ij K_j)``, and the
update is ``x[n+1] = x[n] + h*sum_i b_i K_i``: stages written out (``k1 = f(x[n])``), calls nested
inside calls (Heun's ``f(x[n] + h*f(x[n]))``), coupled stages (Gauss-Legendre's) and an update that
reads its own new value (the trapezoidal rule's ``f(x[n+1])``, a stage at ``x[n] + h*sum b_j K_j``)
and stage values (``y = x[n] + h/2*f(y)``, the Runge-Kutta method in its ``Y`` form) all give the
same tableau. Two calls at one point are one stage, however they are spelled (their
arguments are compared exactly over the numbers' field). Used by :mod:`odenet.analysis.structure`
for the exact symplecticity and symmetry conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy.core.function import AppliedUndef

from odenet.analysis.fields import vanishes
from odenet.ir import Scheme, value

__all__ = ["CallMask", "Tableau", "runge_kutta_tableau"]


@dataclass(frozen=True)
class Tableau:
    a: tuple[tuple[sympy.Expr, ...], ...]  # a[i][j]
    b: tuple[sympy.Expr, ...]

    @property
    def stages(self) -> int:
        return len(self.b)


class CallMask:
    """Function calls replaced by symbols, innermost first, one symbol per point: a call whose
    arguments equal an earlier call's (exactly, by :func:`~odenet.analysis.fields.vanishes`) gets
    that call's symbol. ``uncertain`` is set when two arguments could not be compared exactly."""

    def __init__(self):
        self.points: list[tuple[sympy.Function, tuple[sympy.Expr, ...], sympy.Symbol]] = []
        self.uncertain = False

    def add(self, func, args: tuple[sympy.Expr, ...], symbol: sympy.Symbol) -> None:
        self.points.append((func, args, symbol))

    def __call__(self, expr: sympy.Expr) -> sympy.Expr:
        if not expr.args:
            return expr
        args = tuple(self(a) for a in expr.args)
        if not isinstance(expr, AppliedUndef):
            return expr.func(*args) if args != expr.args else expr
        for func, known, symbol in self.points:
            if func == expr.func and len(known) == len(args) and all(map(self.same, args, known)):
                return symbol
        symbol = sympy.Dummy(f"{expr.func.__name__}{len(self.points)}")
        self.points.append((expr.func, args, symbol))
        return symbol

    def same(self, a: sympy.Expr, b: sympy.Expr) -> bool:
        exact = vanishes(sympy.expand(a - b))
        if exact is None:
            self.uncertain = True
        return bool(exact)


def runge_kutta_tableau(scheme: Scheme, values: dict[sympy.Symbol, sympy.Expr]) -> Tableau | None:
    """The tableau of ``scheme`` at the parameter ``values`` (the step ``h`` stays a symbol), or
    None when it is not a Runge-Kutta method: more than one state or function, history, a
    coefficient that is not a number, a stage that is not ``f`` at ``x[n]`` plus ``h`` times a
    combination of stages."""
    if len(scheme.states) != 1 or any(scheme.history.values()) or len(scheme.functions) != 1:
        return None
    step = next((p.symbol for p in scheme.params if p.name == scheme.step), None)
    if step is None:
        return None
    (state,) = scheme.states
    x0, x1 = value(state, 0), value(state, 1)
    numbers = {k: v for k, v in values.items() if k != step}
    substituted: dict[sympy.Symbol, sympy.Expr] = {}
    coupled: dict[sympy.Symbol, sympy.Expr] = {}
    update = None
    for eq in scheme.steps:
        expr = eq.expr.xreplace(numbers)
        if eq.target in scheme.coupled_stages:
            coupled[eq.target] = expr
        elif eq.target == x1:
            update = expr
        else:
            substituted[eq.target] = expr
    if update is None:
        return None
    for target, expr in list(substituted.items()):  # stages read earlier stages
        substituted[target] = expr.xreplace(substituted)
    update = update.xreplace(substituted)
    mask = CallMask()
    calls: dict[sympy.Symbol, sympy.Expr] = {}  # coupled stages that are a call: K = f(...)
    points: dict[sympy.Symbol, sympy.Expr] = {}  # coupled stage values: Y = x[n] + h*sum(a*f(Y_j))
    for k, expr in coupled.items():
        expr = expr.xreplace(substituted)
        if isinstance(expr, AppliedUndef) and len(expr.args) == 1:
            calls[k] = expr
        else:
            points[k] = expr
    for k, expr in calls.items():  # a coupled stage is the point of its own call
        mask.add(expr.func, (mask(expr.args[0]),), k)
    points = {k: mask(expr) for k, expr in points.items()}
    for _ in range(len(points)):  # a stage value reads another outside calls: y2 = 2*y1 - x[n] + ...
        points = {k: expr.xreplace(points) for k, expr in points.items()}
    if any(expr.free_symbols & set(points) for expr in points.values()):
        return None
    b_form = _combination(mask(update).xreplace(points) - x0, x1, step, mask)
    if b_form is None:
        return None
    own = x0 + step * sum((c * s for s, c in b_form.items()), sympy.Integer(0))  # x[n+1] in stages
    rows = []
    symbols = [symbol for _, _, symbol in mask.points]
    for func, args, _ in mask.points:
        if func.__name__ != scheme.functions[0].name or len(args) != 1:
            return None
        argument = args[0].xreplace(points).xreplace({x1: own})
        row = _combination(sympy.expand(argument) - x0, None, step, mask)
        if row is None:
            return None
        rows.append(row)
    if len(mask.points) != len(symbols) or mask.uncertain:
        return None
    zero = sympy.Integer(0)
    a = tuple(tuple(row.get(s, zero) for s in symbols) for row in rows)
    b = tuple(b_form.get(s, zero) for s in symbols)
    return Tableau(a, b)


def _combination(expr, own, step, mask: CallMask) -> dict[sympy.Symbol, sympy.Expr] | None:
    """``expr = h*sum c_s s`` over the stage symbols ``s``: ``{s: c_s}`` with numbers ``c_s``, else
    None. ``own`` (the update's new value) may appear only inside calls."""
    expr = sympy.expand(expr)
    stages = [symbol for _, _, symbol in mask.points]
    if own is not None and own in expr.free_symbols:
        return None
    out = {}
    rest = expr
    for s in stages:
        c = expr.coeff(s)
        if c == 0:
            continue
        c = sympy.expand(c / step)
        if c.free_symbols:
            return None
        out[s] = c
        rest -= sympy.expand(step * c * s)
    if vanishes(sympy.expand(rest)) is not True:
        return None
    return out
