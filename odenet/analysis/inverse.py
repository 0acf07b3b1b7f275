"""The inverse step: old values from new ones, evaluating the functions only forward.

Forward, one step maps ``(x[n], x[n-1], ..., x[n-d])`` to ``(x[n+1], x[n], ..., x[n-d+1])``. The
inverse knows the new vector, so for each state only the oldest value is unknown (``x[n-d]``, or
``x[n]`` when the state keeps no history). We solve the step equations for those unknowns
*jointly*: a call such as ``f(z[n])`` whose argument is still unknown is an opaque symbol; a
solution that does not involve any opaque symbol frees its unknown, which makes more calls
evaluable; repeat. Reversible Heun needs exactly this: ``z[n]`` comes out free of ``f(z[n])`` only
after its two equations are combined, and then ``f(z[n])`` is known and gives ``y[n]``.

The result is itself a :class:`~odenet.ir.Scheme` in reversed time (index ``m``; the convention is
:mod:`odenet.ir.reversal`'s): its current value ``X[m]`` is the forward ``x[n-d+1]`` and its new value
``X[m+1]`` is the recovered ``x[n-d]``, so history keeps its meaning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy
from sympy.core.function import AppliedUndef

from odenet.analysis.fields import ALGEBRAIC_FAILURES, domain_matrix
from odenet.errors import NotReversibleError
from odenet.ir import Equation, Scheme, format_expr, function_calls, value
from odenet.ir.reversal import forward_to_reversed

__all__ = [
    "InverseDerivation",
    "derive_inverse",
    "fixed_point_inverse",
    "invert",
    "lipschitz_limit",
    "negative_step_problem",
]


@dataclass(frozen=True)
class InverseDerivation:
    """The solved inverse in the forward scheme's own symbols, with what it needs to be valid."""

    solution: tuple[tuple[sympy.Symbol, sympy.Expr], ...]  # (old value, expression), in order
    conditions: tuple[sympy.Expr, ...]  # expressions that must be non-zero
    scheme: Scheme  # the inverse as a Scheme in reversed time


def invert(scheme: Scheme) -> InverseDerivation:
    """Derive the explicit inverse, or raise :class:`NotReversibleError` saying what blocks it."""
    # An implicit step is handled the same way: its new values are all known to the inverse, so
    # backward Euler's inverse x[n] = x[n+1] - h*f(x[n+1]) is explicit.
    known = {value(s, 1) for s in scheme.states}
    unknowns = []
    for state in scheme.states:
        depth = scheme.history[state]
        known |= {value(state, -lag) for lag in range(depth)}
        unknowns.append(value(state, -depth))
    # Coupled stages (an implicit Runge-Kutta method's) depend on the old values: unknowns too.
    equations = [*scheme.update_residuals.values(), *scheme.coupled_residuals.values()]
    unknowns += sorted(scheme.coupled_residuals, key=str)
    try:
        pairs, conditions = _solve_jointly_expanding(scheme, equations, unknowns)
    except NotReversibleError:
        if not scheme.stages:
            raise
        # Stages as unknowns of their own, solved in whatever order frees them: kick-drift-kick
        # Verlet with a nonlinear drift, v_half = v[n] + h/2*f(x[n]), x[n+1] = x[n] + h*g(v_half),
        # v[n+1] = v_half + h/2*f(x[n+1]), gives v_half from the last line, then x[n], then v[n].
        # (With the stages substituted, g(v[n] + h/2*f(x[n])) hides both unknowns.)
        # A stage of numbers and parameters (Yoshida's weight w1 = 1/(2 - 2**(1/3))) is a known
        # coefficient, written in where it is read: as an unknown, w1*f(x[n]) would be a product
        # of unknowns.
        params = {p.symbol for p in scheme.params}
        constants: dict[sympy.Symbol, sympy.Expr] = {}
        for eq in scheme.stages:
            expr = eq.expr.xreplace(constants)
            coupled = eq.target in scheme.coupled_stages
            if not coupled and expr.free_symbols <= params and not function_calls(expr):
                constants[eq.target] = expr
        stages = [
            eq.target
            for eq in scheme.stages
            if eq.target not in scheme.coupled_stages and eq.target not in constants
        ]
        steps = [eq.target - eq.expr.xreplace(constants) for eq in scheme.steps if eq.target not in constants]
        try:
            pairs, conditions = _solve_jointly_expanding(scheme, steps, [*unknowns, *stages])
        except NotReversibleError:
            raise NotReversibleError(_first_message(scheme, equations, unknowns)) from None
    return InverseDerivation(pairs, conditions, _as_scheme(scheme, pairs))


def _first_message(scheme: Scheme, equations, unknowns) -> str:
    """The message of the solve with the stages substituted (it names the call that blocks)."""
    try:
        _solve_jointly(scheme, equations, unknowns, deep=True)
    except NotReversibleError as exc:
        return str(exc)
    raise AssertionError("unreachable: that solve failed before")


def _solve_jointly_expanding(scheme: Scheme, equations, unknowns):
    """:func:`_solve_jointly` with the equations expanded at the top only (fast for many nested
    stages), and again expanded inside the calls when that blocks: an argument such as
    ``h*(x[n+1] + y[n]) - h*y[n]`` is free of ``y[n]`` only once expanded."""
    try:
        return _solve_jointly(scheme, equations, unknowns, deep=False)
    except NotReversibleError:
        return _solve_jointly(scheme, equations, unknowns, deep=True)


def _solve_jointly(scheme: Scheme, equations, unknowns, deep: bool = True):
    """Solve ``equations`` for ``unknowns`` by rounds (see the module doc): ``((unknown, value),
    ...)`` in the order found, and the expressions that must be non-zero."""
    solved: dict[sympy.Symbol, sympy.Expr] = {}
    order: list[sympy.Symbol] = []
    conditions: list[sympy.Expr] = []

    while len(solved) < len(unknowns):
        remaining = [u for u in unknowns if u not in solved]
        current = [sympy.expand(e.xreplace(solved), deep=deep) for e in equations]
        # Calls whose arguments involve a remaining unknown are opaque symbols for this round.
        opaque = {}
        for e in current:
            for call in function_calls(e):
                if call.free_symbols & set(remaining) and call not in opaque:
                    opaque[call] = sympy.Dummy(f"c{len(opaque)}")
        # Replace outermost opaque calls first (inner ones are inside them).
        masked = [_mask(e, opaque) for e in current]
        relevant = [e for e in masked if e.free_symbols & set(remaining)]
        solution = _solve_linear(relevant, remaining)
        if solution is None:
            raise NotReversibleError(_blocked_message(scheme, remaining, opaque, current))
        freed = [
            u for u in remaining if u in solution and not (solution[u].free_symbols & set(opaque.values()))
        ]
        if not freed:
            raise NotReversibleError(_blocked_message(scheme, remaining, opaque, current))
        for u in freed:
            _, denominator = sympy.fraction(sympy.together(solution[u]))
            if not denominator.is_number:
                conditions.extend(factor for factor, _ in sympy.factor_list(denominator)[1])
            solved[u] = sympy.factor_terms(solution[u])
            order.append(u)
    pairs = tuple((u, solved[u]) for u in order)
    conditions = [_trig_simplified(c) for c in conditions]
    return pairs, tuple(_unique(c for c in conditions if not c.is_number))


def _trig_simplified(expr: sympy.Expr) -> sympy.Expr:
    """``sin(h*w)**2 + cos(h*w)**2`` is 1 (a rotation's inverse divides by it): no condition."""
    if expr.has(sympy.sin, sympy.cos, sympy.tan):
        return sympy.trigsimp(expr)
    return expr


def derive_inverse(scheme: Scheme) -> Scheme:
    """The inverse step of ``scheme`` as a Scheme of its own (reversed time; see the module doc).

    Raises :class:`~odenet.errors.NotReversibleError` when no explicit inverse exists, naming the
    old value that sits inside a function call.
    """
    return invert(scheme).scheme


def _mask(expr: sympy.Expr, opaque: dict) -> sympy.Expr:
    if not opaque:
        return expr
    return expr.xreplace(opaque)  # top-down: an outer call is replaced whole, its inner ones with it


def _solve_linear(equations, unknowns) -> dict | None:
    """Solve equations that are linear in the unknowns; None when they are not, or when none is
    determined. Each unknown the equations pin down is solved even if others are not.

    Exact over the field of the coefficients (rational functions of the symbols over the numbers'
    field, ``QQ(2**(1/3))`` for Yoshida's weights): a coefficient that is zero is found zero
    (``1/(2 - 2**(1/3)) - 2**(1/3)/(2 - 2**(1/3)) - (1 - 2**(1/3))/(2 - 2**(1/3))``, which
    ``cancel`` leaves as it is), so an opaque call that cancels is seen to cancel."""
    if not equations:
        return None
    try:
        matrix, rhs = sympy.linear_eq_to_matrix(equations, unknowns)
    except (sympy.polys.polyerrors.PolynomialError, ValueError, NotImplementedError):
        return None  # nonlinear in an old value outside a function call
    # calls read as symbols (a call of known values is a known number to the solve)
    calls = {c: sympy.Dummy(f"k{i}") for i, c in enumerate(function_calls(rhs))}
    augmented = matrix.row_join(rhs.xreplace(calls))
    try:
        reduced, pivots = domain_matrix(augmented).to_field().rref()
    except ALGEBRAIC_FAILURES:
        return _solve_linear_sympy(matrix, rhs, unknowns)
    back = {d: c for c, d in calls.items()}
    domain, rows = reduced.domain, reduced.to_list()
    n = len(unknowns)
    solution = {}
    for i, j in enumerate(pivots):
        if j == n:
            return None  # inconsistent: the equations ask 0 = something
        if all(not rows[i][k] for k in range(n) if k != j):
            solution[unknowns[j]] = domain.to_sympy(rows[i][n]).xreplace(back)  # cancelled already
    return solution or None


def _solve_linear_sympy(matrix, rhs, unknowns) -> dict | None:
    """:func:`_solve_linear` by sympy's own arithmetic, for coefficients outside any number field
    (``exp(-c*h)``): a zero that ``cancel`` misses leaves an unknown unsolved, never wrong."""
    if matrix.shape[0] == matrix.shape[1] and not sympy.cancel(matrix.det()).is_zero:
        values = matrix.LUsolve(rhs)
        return {u: _tidy(v) for u, v in zip(unknowns, values, strict=True)}
    solution = {}
    for i in range(matrix.shape[0]):
        nonzero = [j for j in range(len(unknowns)) if not sympy.cancel(matrix[i, j]).is_zero]
        if len(nonzero) == 1:
            j = nonzero[0]
            solution[unknowns[j]] = _tidy(rhs[i] / matrix[i, j])
    return solution or None


def _tidy(expr: sympy.Expr) -> sympy.Expr:
    """A solved value in a readable normal form: one fraction, cancelled."""
    return sympy.cancel(sympy.together(expr))


def _blocked_message(scheme, remaining, opaque, equations) -> str:
    for call in opaque:
        inside = sorted(str(u) for u in remaining if u in call.free_symbols)
        if inside:
            return (
                f"scheme {scheme.name} has no explicit inverse: the old value {inside[0]} sits inside "
                f"the call {format_expr(call)}, and the step equations cannot be combined to remove it"
            )
    names = ", ".join(str(u) for u in remaining)
    return (
        f"scheme {scheme.name} has no explicit inverse: the step equations do not determine {names} "
        "(information is lost in the step)"
    )


def _unique(items):
    out = []
    for item in items:
        if all(sympy.cancel(item - o) != 0 and sympy.cancel(item + o) != 0 for o in out):
            out.append(item)
    return out


def _as_scheme(scheme: Scheme, solution) -> Scheme:
    """Rename the forward symbols into the reversed-time scheme and package the updates."""
    rename = forward_to_reversed(scheme)
    # Stages solved along the way (see invert) keep their names: they are stages of the inverse too.
    rename |= {eq.target: eq.target for eq in scheme.stages}
    # A later update reads earlier solved values as whole expressions; write them by name, X[m+1]
    # (each in the form it has once the values before it are written by name).
    steps, solved = [], {}
    for old, expr in solution:
        target = rename[old]
        written = _reuse(sympy.sympify(expr).xreplace(rename), solved)
        solved[target] = written
        steps.append(Equation(target, written))
    doc = f"Inverse step of {scheme.name}, derived by odenet (reversed time: X[m+1] is the older value)."
    return _reversed_scheme(scheme, f"{scheme.name}_inverse", doc, steps)


def _reversed_scheme(scheme: Scheme, name: str, doc: str, steps) -> Scheme:
    """An inverse of ``scheme`` as a Scheme of its own: the same states and parameters, and the
    functions it calls (a stage that cancels in the step, ``k = f(x[n])`` in ``x[n+1] = x[n] + h*k -
    h*f(x[n])``, leaves the inverse none to call)."""
    called = {call.func.__name__ for eq in steps for call in function_calls(eq.expr)}
    return Scheme(
        name=name,
        doc=doc,
        states=scheme.states,
        params=scheme.params,
        functions=tuple(f for f in scheme.functions if f.name in called),
        steps=tuple(steps),
        inputs=scheme.inputs,
        outputs=scheme.outputs,
        step=scheme.step,
    )


def _reuse(expr, solved):
    """Write an earlier solved value by its name (X[m+1]) where it appears whole in ``expr``."""
    for symbol, solution in solved.items():
        expr = expr.xreplace({solution: symbol}) if solution in expr.atoms(AppliedUndef) else expr
        expr = expr.replace(
            lambda e, s=solution: isinstance(e, AppliedUndef) and s in e.args,
            lambda e, s=solution, name=symbol: e.func(*[name if a == s else a for a in e.args]),
        )
    return expr


def fixed_point_inverse(scheme: Scheme) -> Scheme:
    """The inverse of an explicit step that has no explicit one, as an implicit step to be solved.

    Forward, the step's update residuals ``R(u) = x[n+1] - rhs(u)`` vanish at the old values ``u``
    (each state's oldest value, as in :func:`invert`). With the function calls set to zero ``R`` is
    linear in ``u``, ``R = A u + b`` (``A`` is ``-M(0)`` restricted to the unknowns), and when ``A``
    is regular the old values are the fixed point of ``u = u - A^-1 R(u)``: for Euler,
    ``x[n] = x[n+1] - h*f(x[n])``, the iteration of Behrmann et al.'s invertible residual networks,
    which converges when ``h*Lip(f) < 1``. The result is that map as a Scheme in reversed time (its
    ``X[m+1]``, read on both sides, is the recovered old value; see :mod:`odenet.ir.reversal`).

    Raises :class:`NotReversibleError` for an implicit step, or when ``A`` is singular (the step
    loses information).
    """
    if not scheme.is_explicit:
        raise NotReversibleError(
            f"scheme {scheme.name} is implicit: its inverse is not derived as a fixed point here"
        )
    unknowns = [value(s, -scheme.history[s]) for s in scheme.states]
    residuals = [scheme.update_residuals[s] for s in scheme.states]
    zero_calls = {call: sympy.Integer(0) for r in residuals for call in function_calls(r)}
    linear = sympy.Matrix([r.xreplace(zero_calls) for r in residuals])
    jacobian = linear.jacobian(unknowns)
    if jacobian.free_symbols & set(unknowns) or sympy.cancel(jacobian.det()).is_zero:
        raise NotReversibleError(
            f"scheme {scheme.name} has no fixed-point inverse: with the functions set to zero the "
            "step does not determine its old values (M(0) is singular)"
        )
    correction = jacobian.inv().applyfunc(sympy.cancel) * sympy.Matrix(residuals)
    rename = forward_to_reversed(scheme)
    # expanded, so that the unknown's own terms outside the calls cancel: Nesterov's velocity,
    # v[n] = v[n] + (v[n+1] - gamma*v[n] - h*f(x[n] + gamma*v[n]))/gamma, iterates as
    # (v[n+1] - h*f(x[n] + gamma*v[n]))/gamma, without the cancellation that kept the first form
    # about 1e-12 (relative to the state) away from an input v = 0 in float64
    steps = [
        Equation(rename[u], _expand_outside_calls(u - correction[i]).xreplace(rename))
        for i, u in enumerate(unknowns)
    ]
    doc = (
        f"Inverse step of {scheme.name} as a fixed point, derived by odenet (reversed time: "
        "X[m+1] is the older value, read on both sides)."
    )
    return _reversed_scheme(scheme, f"{scheme.name}_fixed_point_inverse", doc, steps)


def lipschitz_limit(scheme: Scheme, values: dict[sympy.Symbol, sympy.Expr]) -> float | None:
    """The Lipschitz constant below which the fixed-point inverse's iteration is a contraction,
    proved by a bound: the largest ``L`` such that every function ``L``-Lipschitz (in the 2-norm)
    makes the map ``u -> u - A^-1 R(u)`` of :func:`fixed_point_inverse` a contraction, at the
    parameter ``values``. None when the step is not of that form (a product of calls).

    With ``R(u) = A u + sum_c b_c f_c(a_c(u)) + ...``, the map moves by at most ``sum_c
    |A^-1 b_c| L lip(a_c)`` times the move of ``u``, where ``lip(a)`` is the norm of the argument's
    linear part plus, for a call inside it, its coefficient times ``L lip`` of the inner argument.
    For Euler, ``x[n] = x[n+1] - h*f(x[n])``: ``L < 1/h`` (Behrmann et al.'s ``h*Lip(f) < 1``); for
    ``x[n+1] = c*x[n] + h*f(x[n])``: ``L < |c|/h``; both are exact for linear functions."""
    unknowns = [value(s, -scheme.history[s]) for s in scheme.states]
    residuals = [scheme.update_residuals[s] for s in scheme.states]
    numbers = {k: sympy.N(v, 30) for k, v in values.items()}
    calls = [c for r in residuals for c in _outer_calls(r)]
    calls = list(dict.fromkeys(calls))
    zero = {c: sympy.Integer(0) for c in calls}
    try:  # xreplace works from the top: an outer call set to zero takes its inner ones with it
        a = sympy.Matrix([r.xreplace(zero) for r in residuals]).jacobian(unknowns).xreplace(numbers)
        inverse = np.array(a.evalf(), dtype=float)
        inverse = np.linalg.inv(inverse)
        weights = []
        for c in calls:
            b = [_coefficient(r, c) for r in residuals]
            if any(e.free_symbols & {_CALL, _OTHER} or function_calls(e) for e in b):
                return None  # a product of calls, or a call's coefficient reading a call
            column = np.array([complex(e.xreplace(numbers).evalf()).real for e in b])
            weights.append((float(np.linalg.norm(inverse @ column)), c))
    except (TypeError, ValueError, np.linalg.LinAlgError):
        return None
    unknown_set = set(unknowns)
    memo: dict[sympy.Expr, np.ndarray | None] = {}

    def lip(arg) -> np.ndarray | None:
        """``lip(arg)`` as a polynomial in L (coefficients of 1, L, L**2, ...; all >= 0), each
        argument computed once (an s-stage method nests its calls s deep)."""
        if arg in memo:
            return memo[arg]
        inner = _outer_calls(arg)
        linear = arg.xreplace({c: sympy.Integer(0) for c in inner})
        try:
            gradient = [complex(sympy.diff(linear, u).xreplace(numbers).evalf()).real for u in unknowns]
        except (TypeError, ValueError):
            memo[arg] = None
            return None
        total = np.array([float(np.linalg.norm(gradient))])
        for c in inner:
            if not c.free_symbols & unknown_set:
                continue
            coefficient = _coefficient(arg, c)
            below = [lip(x) for x in c.args]
            if (
                _CALL in coefficient.free_symbols
                or function_calls(coefficient)
                or any(b is None for b in below)
            ):
                memo[arg] = None
                return None
            factor = abs(complex(coefficient.xreplace(numbers).evalf()).real)
            total = _poly_add(total, factor * np.concatenate([[0.0], _poly_sum(below)]))  # times L
        memo[arg] = total
        return total

    bound = np.zeros(1)
    for weight, c in weights:
        parts = [lip(x) for x in c.args]
        if any(p is None for p in parts):
            return None
        bound = _poly_add(bound, weight * np.concatenate([[0.0], _poly_sum(parts)]))  # times L
    if not bound.any():
        return math.inf
    if len(np.trim_zeros(bound, "b")) == 2:  # no call inside a call: the bound is linear in L
        return round_down(1 / bound[1], 12)
    low, high = 0.0, 1.0
    while np.polynomial.polynomial.polyval(high, bound) < 1 and high < 1e12:
        low, high = high, 2 * high
    for _ in range(60):  # increasing in L (coefficients >= 0): one crossing of 1
        middle = (low + high) / 2
        low, high = (middle, high) if np.polynomial.polynomial.polyval(middle, bound) < 1 else (low, middle)
    return round_down(low, 12)


def round_down(x: float, digits: int) -> float:
    """``x > 0`` to ``digits`` significant digits, rounded down (a proved bound stays one), after
    allowing for the floating-point error of its computation (1e-12 relative: 1/0.1 is 10)."""
    if not math.isfinite(x) or x <= 0:
        return x
    x *= 1 + 1e-12
    scale = 10.0 ** (digits - 1 - math.floor(math.log10(x)))
    return math.floor(x * scale) / scale


def _poly_add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(max(len(a), len(b)))
    out[: len(a)] += a
    out[: len(b)] += b
    return out


def _poly_sum(polys) -> np.ndarray:
    total = np.zeros(1)
    for p in polys:
        total = _poly_add(total, p)
    return total


_CALL = sympy.Dummy("call")
_OTHER = sympy.Dummy("other")


def _outer_calls(expr: sympy.Expr) -> list[sympy.Expr]:
    """The calls of ``expr`` outside any other call (``f(x)`` and ``f(x + h*f(x))`` in Heun's step,
    but not the ``f(x)`` inside the second), each once."""
    if isinstance(expr, AppliedUndef):
        return [expr]
    found: list[sympy.Expr] = []
    for arg in expr.args:
        found += [c for c in _outer_calls(arg) if c not in found]
    return found


def _coefficient(expr: sympy.Expr, call: sympy.Expr) -> sympy.Expr:
    """The derivative of ``expr`` by the value of ``call`` where it appears outside other calls
    (the other calls masked by symbols first: differentiating through a method's nested stages is
    slow). A coefficient that reads another call keeps that call's symbol (``_OTHER``)."""
    outer = _outer_calls(expr)
    mapping = {c: (_CALL if c == call else _OTHER) for c in outer}
    return sympy.diff(_replace_outer(expr, mapping), _CALL)


def _replace_outer(expr: sympy.Expr, mapping: dict) -> sympy.Expr:
    if expr in mapping:
        return mapping[expr]
    if isinstance(expr, AppliedUndef) or not expr.args:
        return expr
    return expr.func(*(_replace_outer(a, mapping) for a in expr.args))


def _expand_outside_calls(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` expanded, its function calls left as they are (their arguments keep their form)."""
    calls = {call: sympy.Dummy() for call in function_calls(expr)}
    return sympy.expand(expr.xreplace(calls)).xreplace({d: c for c, d in calls.items()})


def negative_step_problem(scheme: Scheme) -> str | None:
    """Why the step cannot be taken with ``-h`` (the adjoint's approximate inverse), or None: a
    coefficient that is not real for a negative step, such as ``sqrt(h)`` or ``log(h)``."""
    step = next((p for p in scheme.params if p.name == scheme.step), None)
    if step is None:
        return None
    values = {p.symbol: sympy.N(p.default, 30) for p in scheme.params}  # exp(-1) as a default too
    values[step.symbol] = -abs(sympy.N(step.default, 30)) if step.default != 0 else sympy.Float(-1)
    for eq in scheme.steps:
        for term in sympy.preorder_traversal(eq.expr):
            root = isinstance(term, sympy.log) or (term.is_Pow and not term.exp.is_integer)
            if not root or not term.has(step.symbol) or term.atoms(AppliedUndef):
                continue
            at = term.xreplace(values)
            number = complex(at.xreplace({s: sympy.Float(1) for s in at.free_symbols}).evalf())
            if abs(number.imag) > 1e-12 * max(1.0, abs(number)):
                return f"{format_expr(term)} is not real for {scheme.step} < 0"
    return None
