"""Order of accuracy in the step ``h``, the ODE the scheme is consistent with, and the leading error.

Method: put a smooth trajectory into the step equations and expand in powers of ``h``.

* Every state ``s`` is a smooth function of time, ``s[n+j] = s(t + j*h)``, Taylor-expanded with its
  time derivatives ``s, s', s'', ...`` as independent symbols (jets). Functions of the state are
  expanded around the leading term: ``f(x + d) = f(x) + f'(x) d + ...``.
* A state whose equation is trivial at ``h**0`` (``x = x``) *evolves*: the first non-trivial power of
  its equation gives its ODE, solved for its highest derivative: ``x' = f(x)`` (Euler),
  ``y'' = -f(y)`` (leapfrog, at ``h**2``), ``u' = f(u)/(k + 1)`` (LM-ResNet), or a partitioned system
  ``y' = f(z), z' = -g(y)``. ``x' = v, v' = f(x)`` makes Verlet a scheme for ``x'' = f(x)``.
* A state whose equation is not trivial at ``h**0`` is *slaved* to the others, as a multistep
  method's history or an auxiliary value is: reversible Heun's ``z = y``, Adams-Bashforth's
  ``F = f(x)``. Its expansion ``A0 + h*A1 + ...`` is solved order by order (this is how a multistep
  method is judged: with exact starting values, so parasitic components do not enter).
* With the ODE substituted for the highest derivatives, the first power ``h**m`` at which an evolving
  state's residual does not vanish gives the order ``p = m - i0`` (``i0``: the power of its ODE), and
  that residual is the leading local error. Before substitution, the truncated equation is the
  *modified equation* (Lu et al. 2018: ``(1+k) u' + (1-k) h/2 u'' = f(u)`` for LM-ResNet).

The expansion is scalar (one state component, one function argument): for order up to 4 the scalar
conditions are the general ones; beyond, they are necessary only. So a scheme for one first-order
ODE ``x' = f(x)`` is then judged on the conditions of every rooted tree (:mod:`~odenet.analysis.
bseries`), which hold for systems, to order 12; its decimals, if it is written with them, are taken
as approximations of the coefficients meant (see ``OrderResult.exact_order``). Tests cross-check the
result with nodepy's catalogue and with an empirical convergence slope on a nonlinear problem.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import sympy
from sympy.core.function import AppliedUndef

from odenet.analysis.bseries import tree_order
from odenet.ir import Scheme, parse_value
from odenet.ir.printing import format_expr

__all__ = ["OrderResult", "order_of_accuracy"]

TERMS = (4, 7, 10)  # scalar expansions to h**(k-1) tried in turn, until an error term shows
MAX_TREE_ORDER = 12  # the tree conditions are checked up to this order
DECIMAL_DIGITS = 10  # a coefficient with at least this many decimal places is a rounded decimal
LEADING_ERROR_ORDER = 4  # the leading error term is expanded (scalar) for orders up to this one
_t = sympy.Symbol("t")


class _UnsupportedError(Exception):
    """The expansion cannot treat this scheme; the message is the reason reported with order null."""


@dataclass(frozen=True)
class OrderResult:
    order: int | None
    reason: str  # why the order is null, or what it was judged on
    ode: tuple[str, ...] = ()  # "x' = f(x)", one line per evolving state; "z = y" for slaved ones
    leading_error: sympy.Expr | None = None  # h**(p+i0) * residual, with time derivatives of the states
    leading_error_text: str | None = None  # the same, written with primes: h**2*f(x)*f'(x)/2
    modified_equation: str | None = None
    lower_bound: bool = False  # the expansion was truncated before any error term appeared
    # For a scheme written with rounded decimals: the order of the coefficients exactly as written
    # (``order`` is the one they approximate, to the precision of their digits); else equal to order.
    exact_order: int | None = None
    # ``c`` when the limit ODE is x' = c*f(x), c a constant other than 1: x' = f(x) in rescaled time
    time_scale: sympy.Expr | None = None
    unscaled_ode: str | None = None  # x' = f(x), the ODE followed in that time


# -- truncated power series in h -------------------------------------------------------------------


def _const(c, n: int) -> list:
    return [sympy.sympify(c)] + [sympy.Integer(0)] * (n - 1)


def _add(a, b):
    return [x + y for x, y in zip(a, b, strict=True)]


def _mul(a, b):
    n = len(a)
    out = [sympy.Integer(0)] * n
    for i, x in enumerate(a):
        if x == 0:
            continue
        for j in range(n - i):
            if b[j] != 0:
                out[i + j] += x * b[j]
    return [sympy.expand(c) for c in out]


def _reciprocal(a):
    if a[0] == 0:
        raise _UnsupportedError("the step divides by a quantity that vanishes as h -> 0")
    out = [1 / a[0]] + [sympy.Integer(0)] * (len(a) - 1)
    for n in range(1, len(a)):
        out[n] = sympy.expand(-sum(a[k] * out[n - k] for k in range(1, n + 1)) / a[0])
    return out


def _power(a, exponent):
    if exponent.is_Integer:
        k = int(exponent)
        base = a if k >= 0 else _reciprocal(a)
        out = _const(1, len(a))
        for _ in range(abs(k)):
            out = _mul(out, base)
        return out
    if all(c == 0 for c in a[1:]):  # a constant raised to any power
        return _const(a[0] ** exponent, len(a))
    if a[0] != 0:  # (a0 + d)**p, Taylor in d: sqrt(1 + c*h)
        return _compose(lambda u: u**exponent, a)
    raise _UnsupportedError(
        f"a non-integer power ({format_expr(exponent)}) of an expression that vanishes at h = 0"
    )


def _compose(function, argument):
    """``f(a0 + d)`` as ``sum_j f^(j)(a0) d**j / j!``: f's derivatives at the leading term."""
    a0, rest = argument[0], [sympy.Integer(0), *argument[1:]]
    u = sympy.Dummy("u")
    out = _const(0, len(argument))
    power = _const(1, len(argument))
    for j in range(len(argument)):
        derivative = sympy.diff(function(u), u, j).subs(u, a0) if j else function(a0)
        out = _add(out, [derivative * c / math.factorial(j) for c in power])
        power = _mul(power, rest)
        if all(c == 0 for c in power):
            break
    return out


# -- the expansion -------------------------------------------------------------------------------


@dataclass
class _Problem:
    scheme: Scheme
    h: sympy.Symbol
    evolving: list[str]
    slaved: list[str]
    jets: dict[str, list[sympy.Symbol]]  # evolving state -> [s, s', s'', ...]
    terms: int  # length of the expansions being computed
    slaved_series: dict[str, list[sympy.Expr]]  # slaved state -> [A_0, A_1, ...] (jet expressions)


def _series(expr, problem: _Problem, shifted) -> list:
    """The truncated series of a right-hand side, ``shifted(symbol)`` giving each value's series."""
    n = problem.terms
    if expr == problem.h:
        return ([sympy.Integer(0), sympy.Integer(1)] + [sympy.Integer(0)] * n)[:n]
    if expr.is_Symbol:
        if parse_value(expr) is not None:
            return shifted(expr)
        return _const(expr, n)  # a parameter
    if expr.is_Number:
        return _const(expr, n)
    if problem.h not in expr.free_symbols and not any(parse_value(s) for s in expr.free_symbols):
        return _const(expr, n)  # constants and functions of parameters
    if isinstance(expr, AppliedUndef):
        if len(expr.args) != 1:
            raise _UnsupportedError("the order analysis handles functions of one argument")
        return _compose(expr.func, _series(expr.args[0], problem, shifted))
    if expr.is_Add:
        out = _const(0, n)
        for arg in expr.args:
            out = _add(out, _series(arg, problem, shifted))
        return out
    if expr.is_Mul:
        out = _const(1, n)
        for arg in expr.args:
            out = _mul(out, _series(arg, problem, shifted))
        return out
    if expr.is_Pow:
        if expr.exp.free_symbols:
            raise _UnsupportedError("an exponent that depends on h or the state")
        return _power(_series(expr.base, problem, shifted), expr.exp)
    if isinstance(expr, sympy.Function) and len(expr.args) == 1:
        # exp, sin, cos, tanh, log of an expression in h (an exponential integrator's exp(-k*h), a
        # friction factor exp(-c*h/2)): expanded in h like everything else (Taylor at h = 0)
        argument = _series(expr.args[0], problem, shifted)
        if isinstance(expr, sympy.log) and argument[0] == 0:
            raise _UnsupportedError("log of an expression that vanishes at h = 0")
        return _compose(expr.func, argument)
    raise _UnsupportedError(f"{expr.func.__name__} of an expression in h or the state")


def _shifted_factory(problem: _Problem):
    derivatives: dict[tuple[str, int], list[sympy.Expr]] = {}

    def time_derivatives(state: str, k: int, count: int) -> list[sympy.Expr]:
        """D^i A_k for i < count, extended on demand and kept while A_k stays the same."""
        current = problem.slaved_series[state][k]
        cached = derivatives.get((state, k))
        if cached is None or cached[0] != current:
            cached = derivatives[(state, k)] = [current]
        while len(cached) < count:
            cached.append(_total_derivative(cached[-1], problem.jets))
        return cached

    def shifted(symbol):
        state, j = parse_value(symbol)
        if state in problem.jets:
            jets = problem.jets[state]
            return [sympy.Rational(j) ** i / math.factorial(i) * jets[i] for i in range(problem.terms)]
        # a slaved state: sum_k h**k A_k(t + j h), each A_k Taylor-expanded in time
        out = []
        for m in range(problem.terms):
            terms = []
            for k in range(m + 1):
                if problem.slaved_series[state][k] != 0:
                    d = time_derivatives(state, k, m - k + 1)[m - k]
                    terms.append(sympy.Rational(j) ** (m - k) / math.factorial(m - k) * d)
            out.append(sympy.expand(sympy.Add(*terms)))
        return out

    return shifted


def _total_derivative(expr, jets: dict[str, list[sympy.Symbol]]):
    """d/dt on jet space: each jet s^(i) has derivative s^(i+1)."""
    out = sympy.Integer(0)
    for symbols in jets.values():
        for i in range(len(symbols) - 1):
            if symbols[i] in expr.free_symbols:
                out += sympy.diff(expr, symbols[i]) * symbols[i + 1]
    return sympy.expand(out)


def _is_zero(expr, values) -> bool:
    expr = sympy.expand(expr.xreplace(values))
    return expr == 0 or sympy.cancel(sympy.together(expr)) == 0


def _collapse(expr):
    """At h = 0 every value of a smooth trajectory is the same: x[n+1] = x[n] = x[n-1] = x."""
    return expr.xreplace({v: sympy.Symbol(parse_value(v)[0]) for v in expr.free_symbols if parse_value(v)})


def _derivative_form(expr, jets):
    """Jets as derivatives of functions of t, for display: x'' becomes Derivative(x(t), (t, 2))."""
    rules = {}
    for state, symbols in jets.items():
        fun = sympy.Function(state)(_t)
        for i, s in enumerate(symbols):
            rules[s] = fun if i == 0 else sympy.Derivative(fun, (_t, i))
    return expr.subs(rules)


def _prime(state: str, i: int) -> str:
    return state + "'" * i if i <= 3 else f"{state}^({i})"


def _jet_text(expr, jets) -> str:
    """Text with primes: jets as x', x''; derivatives of functions as f'(x), f''(x)."""
    names = {}
    for state, symbols in jets.items():
        for i, s in enumerate(symbols):
            names[s] = sympy.Symbol(_prime(state, i))
    expr = expr.replace(
        lambda e: (
            isinstance(e, sympy.Derivative) and isinstance(e.expr, AppliedUndef) and len(e.variables) > 0
        ),
        lambda e: sympy.Symbol(
            f"{_prime(e.expr.func.__name__, len(e.variables))}({format_expr(e.variables[0])})"
        ),
    )
    return format_expr(expr.xreplace(names))


def order_of_accuracy(scheme: Scheme, values: dict[sympy.Symbol, sympy.Expr]) -> OrderResult:
    """The order in the step ``h`` (or the parameter declared with ``step``) at the parameter
    ``values`` (a dict from parameter symbols to numbers)."""
    if scheme.step_param is None:
        return OrderResult(
            None,
            f"the scheme has no step parameter {scheme.step} (nor one declared with 'step'), "
            "so it discretizes no ODE",
        )
    h = scheme.step_param.symbol
    # A scheme of one state and one function that is a B-series (a Runge-Kutta or multistep
    # method, in any form): the tree conditions decide the order on their own, and the scalar
    # expansion (slow for many stages or coupled ones) runs only as far as the leading error needs.
    trees = _trees_first(scheme, h, values)
    if trees is not None:
        return trees
    if scheme.coupled_stages:
        return OrderResult(
            None,
            "not analyzed: coupled implicit stages are judged on the tree conditions, which need one "
            "evolving state and one function of one argument",
        )
    try:
        result = _order(scheme, h, values, TERMS[0])
    except _UnsupportedError as exc:
        return OrderResult(None, f"not analyzed: {exc}")
    trees = _by_trees(scheme, h, values, result)
    if trees is not None:
        return trees
    for terms in TERMS[1:]:
        if not result.lower_bound:
            break
        try:
            result = _order(scheme, h, values, terms)
        except _UnsupportedError as exc:
            return OrderResult(None, f"not analyzed: {exc}")
    return replace(result, exact_order=result.order)


def _coupled_stages(scheme: Scheme) -> bool:
    """Whether new values other than one evolving state's are read before they are computed."""
    if scheme.coupled_stages:
        return True
    references = {symbol.name.split("[")[0] for _, symbol in scheme.implicit_references}
    return len(references) > 1 or (len(references) == 1 and len(scheme.states) > 1)


def _trees_first(scheme: Scheme, h, values) -> OrderResult | None:
    """The tree conditions without the scalar expansion (which finds the ODE): for a scheme with one
    evolving state and one function, consistent with ``x' = f(x)`` (the order-1 tree condition)."""
    evolving, slaved = _classify(scheme.update_residuals, h, values)
    if len(evolving) != 1 or len(scheme.functions) != 1 or scheme.functions[0].arity != 1:
        return None
    state, f = evolving[0], scheme.functions[0].name
    ode = (f"{state}' = {f}({state})", *(f"{s} is an auxiliary (parasitic) state" for s in slaved))
    return _by_trees(scheme, h, values, OrderResult(0, "", ode, lower_bound=True))


def _decimal_digits(scheme: Scheme) -> int | None:
    """The significant digits of the scheme's decimals, when it is written with rounded decimals
    (a coefficient with at least DECIMAL_DIGITS decimal places), else None."""
    digits = []
    for eq in scheme.steps:
        for number in eq.expr.atoms(sympy.Rational):
            q = int(number.q)
            places = 0
            while q % 10 == 0 and q > 1:
                q, places = q // 10, places + 1
            if q == 1 and places >= DECIMAL_DIGITS:
                digits.append(len(str(abs(int(number.p)))))
    return max(digits) if digits else None


def _by_trees(scheme: Scheme, h, values, scalar: OrderResult) -> OrderResult | None:
    """The order from the tree conditions, for a scheme of ``x' = f(x)``; None for other schemes."""
    evolving = [line for line in scalar.ode if "auxiliary" not in line]
    if scalar.order is None or len(evolving) != 1 or len(scheme.functions) != 1:
        return None
    f = scheme.functions[0].name
    state = evolving[0].split("'", 1)[0]
    decimals = _decimal_digits(scheme)
    # x' = f(x); with rounded decimals, x' = c*f(x) with c = 1 to their precision (checked below)
    if evolving[0] != f"{state}' = {f}({state})" and not (decimals and f"{f}({state})" in evolving[0]):
        return None
    if scalar.order < 4 and not scalar.lower_bound and decimals is None:
        return None  # below order 5 the scalar conditions are the general ones
    found = tree_order(scheme, state, f, h, values, MAX_TREE_ORDER, decimals)
    if found is None or found.order == 0:
        return None
    reason = "judged on the order conditions of every rooted tree (B-series), which hold for systems"
    if found.lower_bound:
        reason = f"every tree condition holds up to order {found.order}: the order is at least {found.order}"
    if decimals is not None and found.exact_order < found.order:
        reason += (
            f"; the coefficients are {decimals}-digit decimals: order {found.order} to their precision, "
            f"while the decimals as written satisfy order {found.exact_order} exactly"
        )
    leading = _tree_leading_error(state, f, h, found) if decimals is None else None
    return OrderResult(
        found.order,
        reason,
        scalar.ode,
        leading_error=None if leading is None else leading[0],
        leading_error_text=None if leading is None else leading[1],
        modified_equation=None if leading is None else leading[2],
        lower_bound=found.lower_bound,
        exact_order=found.exact_order,
    )


def _tree_leading_error(state: str, function: str, h, found) -> tuple[sympy.Expr, str, str] | None:
    """The leading local error ``h**(p+1) delta`` with ``delta = sum_t e(t) F(t) / rho'(1)`` over the
    trees of order p + 1 (``e``: the residual's coefficient, ``F``: the elementary differential of
    the scalar ODE, ``f^(k)(x)`` times its children's; ``rho'(1)`` is 1 for one-step methods, the
    normalisation of a multistep method's error constant), and the modified equation to that
    order, ``x' = f(x) - h**p delta`` (backward error analysis: the ODE the numerical solution
    follows to one order more)."""
    if found.lower_bound or not found.error or found.order > LEADING_ERROR_ORDER:
        return None
    x = sympy.Symbol(state)
    fx = sympy.Function(function)(x)

    @functools.cache
    def elementary(tree) -> sympy.Expr:
        derivative = fx if not tree else sympy.Derivative(fx, (x, len(tree)))
        return derivative * sympy.Mul(*(elementary(child) for child in tree))

    delta = sympy.expand(sympy.Add(*(e * elementary(t) for t, e in found.error)) / found.scale)
    jets = {state: [x, sympy.Dummy(f"{state}_1")]}
    leading = sympy.factor(delta) * h ** (found.order + 1)
    modified = sympy.expand(fx - h**found.order * delta)
    text = f"{_prime(state, 1)} = {_jet_text(modified, jets)}"
    return _derivative_form(leading, jets), _jet_text(leading, jets), text


def _classify(residuals: dict[str, sympy.Expr], h, values) -> tuple[list[str], list[str]]:
    """Evolving and slaved states, from the step at h = 0 (every value of a state equal).

    A state whose equation is trivial there (``x = x``) evolves. The others are solved for, one by
    one, copies first (equations without h: ``x1 = x`` for a carried past value, ``F = f(x)``); a
    state whose equation becomes trivial once the states solved so far are substituted evolves too
    (a multistep method written with its past values as states: ``x = 4/3 x - 1/3 x1`` with
    ``x1 = x``).
    """
    at_zero = {s: _collapse(r.subs(h, 0)) for s, r in residuals.items()}
    evolving = [s for s in residuals if _is_zero(at_zero[s], values)]
    pending = [s for s in residuals if s not in evolving]
    pending.sort(key=lambda s: (h in residuals[s].free_symbols, sympy.count_ops(at_zero[s])))
    solved: dict[sympy.Symbol, sympy.Expr] = {}
    unsolved = []
    for s in pending:
        symbol = sympy.Symbol(s)
        equation = sympy.expand(at_zero[s].xreplace(solved))
        if _is_zero(equation, values):
            evolving.append(s)
            continue
        slope = sympy.diff(equation, symbol)
        if symbol in slope.free_symbols or _is_zero(slope, values):
            unsolved.append(s)  # not solvable for its own state here: decided below
            continue
        value = sympy.expand(symbol - equation / slope)
        solved = {k: v.xreplace({symbol: value}) for k, v in solved.items()}
        solved[symbol] = value
    # A state whose equation did not involve it may still be trivial once every other state is
    # placed: the heavy ball's x[n+1] = x[n] + v[n+1] reads x = x + v at h = 0, which holds once
    # v = 0 (the velocity is O(h)). Such a state evolves; the others are left to the slaved solve.
    for s in unsolved:
        if _is_zero(sympy.expand(at_zero[s].xreplace(solved)), values):
            evolving.append(s)
    slaved = [s for s in residuals if s not in evolving]
    order = list(residuals)
    return sorted(evolving, key=order.index), slaved


def _order(scheme: Scheme, h, values, terms: int) -> OrderResult:
    residuals = scheme.update_residuals
    evolving, slaved = _classify(residuals, h, values)
    if not evolving:
        return OrderResult(None, "inconsistent: no state evolves smoothly as h -> 0")
    jets = {s: [sympy.Symbol(s)] + [sympy.Dummy(f"{s}_{i}") for i in range(1, terms + 1)] for s in evolving}
    problem = _Problem(scheme, h, evolving, slaved, jets, terms, {})
    shifted = _shifted_factory(problem)

    if slaved:
        # Leading order: the slaved states' equations at h = 0, solved for them (z = y, F = f(x)).
        symbols = [sympy.Symbol(s) for s in slaved]
        at_zero = [_collapse(residuals[s].subs(h, 0)) for s in slaved]
        try:
            matrix, rhs = sympy.linear_eq_to_matrix(at_zero, symbols)
        except (sympy.polys.polyerrors.PolynomialError, ValueError) as exc:
            raise _UnsupportedError("an auxiliary state enters its own equation nonlinearly") from exc
        if _is_zero(matrix.det(), values):
            raise _UnsupportedError("an auxiliary state is not determined by its equation")
        leading = [sympy.expand(v) for v in matrix.LUsolve(rhs)]
        for name, a0 in zip(slaved, leading, strict=True):
            problem.slaved_series[name] = [a0] + [sympy.Integer(0)] * (terms - 1)
        # Higher orders: at h**k the slaved equations read  matrix * A_k + (known terms) = 0.
        for k in range(1, terms):
            problem.terms = k + 1  # A_k is fixed at h**k: expand no further
            known = [_series(residuals[s], problem, shifted)[k] for s in slaved]
            correction = matrix.LUsolve(sympy.Matrix([-c for c in known]))
            for name, a_k in zip(slaved, correction, strict=True):
                problem.slaved_series[name][k] = sympy.expand(a_k)
    problem.terms = terms
    series = {s: _series(residuals[s], problem, shifted) for s in evolving}

    # Evolving states: the first non-trivial power is the ODE.
    ode: dict[str, tuple[int, int, sympy.Expr, sympy.Expr]] = {}  # state -> (power, order, F, coefficient)
    for s in evolving:
        power = next((i for i, c in enumerate(series[s]) if not _is_zero(c, values)), None)
        if power is None:
            ode[s] = (1, 1, sympy.Integer(0), sympy.Integer(1))  # a state that never moves
            continue
        coefficient_expr = series[s][power]
        order = max((i for i, j in enumerate(jets[s]) if j in coefficient_expr.free_symbols), default=0)
        if order == 0:
            raise _UnsupportedError(f"inconsistent: the equation of {s} fixes {s} itself at order h**{power}")
        highest = jets[s][order]
        alpha = sympy.expand(coefficient_expr).coeff(highest)
        if highest in alpha.free_symbols or _is_zero(alpha, values):
            raise _UnsupportedError(f"the equation of {s} is not linear in its highest derivative")
        rest = sympy.expand(coefficient_expr - alpha * highest)
        ode[s] = (power, order, _simplest(sympy.expand(-rest / alpha)), alpha)

    # Reduce every jet to phase coordinates (s, ..., s^(order-1)) with the ODE.
    reduce: dict = {}
    for s, (_, order, rhs, _) in ode.items():
        reduce[jets[s][order]] = rhs
    for _ in range(terms):  # the right-hand sides may name other states' highest derivatives
        changed = {k: sympy.expand(v.xreplace(reduce)) for k, v in reduce.items()}
        if changed == reduce:
            break
        reduce = changed
    phase = {s: jets[s][: ode[s][1]] for s in evolving}
    for s, (_, order, _, _) in ode.items():
        current = reduce[jets[s][order]]
        for extra in range(order + 1, terms + 1):
            current = sympy.expand(_ode_derivative(current, phase, jets, ode, reduce))
            reduce[jets[s][extra]] = current

    # The first surviving power of each evolving state's residual gives its order.
    best: tuple[int, str, int] | None = None
    for s in evolving:
        power = ode[s][0]
        for m in range(power + 1, terms):
            term = sympy.expand(series[s][m].xreplace(reduce))
            if not _is_zero(term, values):
                if best is None or m - power < best[0]:
                    best = (m - power, s, m)
                break
    ode_text = tuple(f"{_prime(s, ode[s][1])} = {_jet_text(ode[s][2], jets)}" for s in evolving)
    slaved_text = tuple(f"{s} is an auxiliary (parasitic) state" for s in slaved)
    scale, unscaled = _time_scale(evolving, ode, jets)
    if best is None:
        worst = min(terms - 1 - ode[s][0] for s in evolving)
        return OrderResult(
            worst,
            f"no error term up to h**{terms - 1}: the order is at least {worst}",
            ode_text + slaved_text,
            lower_bound=True,
            time_scale=scale,
            unscaled_ode=unscaled,
        )
    p, s, m = best
    alpha = ode[s][3]
    leading = sympy.factor(sympy.expand(series[s][m].xreplace(reduce) / alpha)) * h**m
    power = ode[s][0]
    modified = sympy.expand(series[s][power] + h ** (m - power) * series[s][m])
    return OrderResult(
        p,
        f"judged on {s}, with auxiliary states slaved to the evolving ones",
        ode_text + slaved_text,
        leading_error=_derivative_form(leading, jets),
        leading_error_text=_jet_text(leading, jets),
        modified_equation=f"{_jet_text(modified, jets)} = 0",
        time_scale=scale,
        unscaled_ode=unscaled,
    )


def _simplest(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` as written, or cancelled to one fraction when that is shorter (the Robert-Asselin
    filter's ``2*f(x)/(1 + 1/(nu - 1)**2 - ...)`` is ``f(x)``)."""
    cancelled = sympy.expand(sympy.cancel(expr))
    return cancelled if sympy.count_ops(cancelled) < sympy.count_ops(expr) else expr


def _time_scale(evolving, ode, jets) -> tuple[sympy.Expr | None, str | None]:
    """``c`` when the limit ODE is ``x' = c*f(x)`` with a constant ``c != 1``: the scheme follows
    ``x' = f(x)`` in a rescaled time, one step of size h advancing it by ``c*h`` (heavy ball with
    momentum gamma: ``c = 1/(1 - gamma)``; LM-ResNet: ``c = 1/(1 + k)``)."""
    if len(evolving) != 1 or ode[evolving[0]][1] != 1:
        return None, None
    state = evolving[0]
    rhs = ode[state][2]
    calls = [c for c in rhs.atoms(AppliedUndef) if not c.free_symbols - set(jets[state][:1])]
    if len(calls) != 1:
        return None, None
    c = _simplest(sympy.expand(rhs / calls[0]))
    if c.has(AppliedUndef) or c.free_symbols & set(jets[state]) or c == 1:
        return None, None
    return c, f"{_prime(state, 1)} = {_jet_text(calls[0], jets)}"


def _ode_derivative(expr, phase, jets, ode, reduce):
    """d/dt of an expression in phase coordinates, along the ODE."""
    out = sympy.Integer(0)
    for s, coordinates in phase.items():
        for i, c in enumerate(coordinates):
            if c in expr.free_symbols:
                derivative = coordinates[i + 1] if i + 1 < len(coordinates) else reduce[jets[s][ode[s][1]]]
                out += sympy.diff(expr, c) * derivative
    return out
